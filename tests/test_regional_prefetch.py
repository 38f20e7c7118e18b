"""A consult's remote studies: a study still only in the city's PACS (a real Orthanc) is added
to a draft request, fetched into the archive when the request is submitted, and shared with the
target institution like the request's own studies; only the draft's author adds, only the
case's parties see the list."""

from __future__ import annotations

import time
from pathlib import Path

from pydicom import dcmread

from consilium.synthetic import PatientSpec, StudySpec, write_ct_series
from tests.conftest import dcmtk, free_port, institutions_env, pydicom_data_dir
from tests.orthanc import Orthanc
from tests.webserver import WebServer, csrf_of

LOCAL = "1.3.6.1.4.1.5962.1.2.1.20040119072730.12322"  # CT_small.dcm, sent by the city


def test_remote_studies_of_a_request_are_fetched_on_submit_and_shared(tmp_path: Path) -> None:
    ct = write_ct_series(StudySpec(PatientSpec("1CT1", "Remote^Prior", "19500101", "M"),
                                   "20250101", accession="PRIOR-1", description="CT PRIOR"),
                         tmp_path / "ct", slices=3, rows=64, columns=64, uid_seed="prefetch")
    remote_uid = str(dcmread(ct[0], stop_before_pixels=True).StudyInstanceUID)
    web_dicom_port = free_port()
    orthanc = Orthanc(tmp_path / "orthanc", ae_title="CITY_PACS",
                      modalities={"CONSILIUM": ("127.0.0.1", web_dicom_port)})
    web = WebServer(tmp_path / "var", dicom_port=web_dicom_port, extra_env={
        **institutions_env({"CITY_PACS": orthanc.dicom_port}),
        "CONSILIUM_IDENTITY_LOGIN_ATTEMPTS_PER_MINUTE": "1000"})
    orthanc.start()
    try:
        assert dcmtk("storescu", "-aec", "CITY_PACS", "127.0.0.1", str(orthanc.dicom_port),
                     *map(str, ct)).returncode == 0
        web.start()
        assert dcmtk("storescu", "-aet", "STORESCU", "-aec", "CONSILIUM", "127.0.0.1",
                     str(web_dicom_port), str(pydicom_data_dir() / "test_files" /
                                              "CT_small.dcm")).returncode == 0
        author = web.login("ivanova")
        token = {"X-CSRF-Token": csrf_of(author)}
        case = author.post("/api/cases", headers=token, json={
            "question": "Сравнить с прошлым КТ", "study_uids": [LOCAL],
            "target_institution": "regional-center"}).json()
        body = {"case_id": case["id"], "source": "dimse:CITY_PACS", "study_uid": remote_uid,
                "expected": 3}
        added = author.post("/api/federation/case-studies", headers=token, json=body)
        assert added.status_code == 200, added.text
        assert added.json()["state"] == "pending"
        assert author.post("/api/federation/case-studies", headers=token,
                           json=body).status_code == 409  # once
        colleague = web.login("petrov")  # may not see another doctor's draft
        assert colleague.post("/api/federation/case-studies", json=body, headers={
            "X-CSRF-Token": csrf_of(colleague)}).status_code == 404
        consultant = web.login("kuznetsova")
        assert consultant.get("/api/federation/case-studies",
                              params={"case_id": case["id"]}).status_code == 404  # a draft
        # nothing is fetched for a draft, nothing shared
        time.sleep(1)
        assert consultant.get(f"/dicom-web/studies/{remote_uid}/metadata").status_code == 404
        assert author.get("/api/studies").json()[0]["study_uid"] == LOCAL
        assert len(author.get("/api/studies").json()) == 1

        submitted = author.post(f"/api/cases/{case['id']}/submit", headers=token,
                                json={"version": case["version"]})
        assert submitted.status_code == 200, submitted.text
        deadline = time.monotonic() + 60
        while True:
            rows = consultant.get("/api/federation/case-studies",
                                  params={"case_id": case["id"]}).json()
            if rows[0]["state"] in ("fetched", "failed") or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert rows[0]["state"] == "fetched", rows
        # the target reads it as one of the request's studies
        metadata = consultant.get(f"/dicom-web/studies/{remote_uid}/metadata")
        assert metadata.status_code == 200 and len(metadata.json()) == 3
        owner = next(s for s in author.get("/api/studies").json()
                     if s["study_uid"] == remote_uid)
        assert owner["institution_id"] == "city-hospital"
        # a submitted request takes no more
        late = author.post("/api/federation/case-studies", headers=token,
                           json={**body, "study_uid": "1.2.3.4.5"})
        assert late.status_code == 409
    finally:
        web.stop()
        orthanc.stop()
