"""A referring doctor finds studies still only in their hospital's PACS (a real Orthanc) and
fetches them into the archive: C-FIND and C-MOVE by a real ``consilium serve`` on the doctor's
behalf, the images arriving through its C-STORE SCP, byte-identical; who may do it; the audit
records; and what a clinician sees when the PACS is down."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from pydicom import dcmread

from consilium.archive.dicomfile import split_part10
from consilium.archive.remote import StudyFilters, study_identifier
from consilium.errors import InvalidInput
from consilium.synthetic import PatientSpec, StudySpec, write_ct_series
from tests.conftest import dcmtk, free_port, institutions_env, pydicom_data_dir
from tests.orthanc import Orthanc
from tests.webserver import WebServer, csrf_of

CHARSETS = pydicom_data_dir() / "charset_files"
RUSSIAN = CHARSETS / "chrRuss.dcm"  # ISO_IR 144: Люкceмбypг, patient SCSRUSS
CHINESE = CHARSETS / "chrX1.dcm"  # ISO_IR 192: Wang^XiaoDong=王^小東, patient X1EXAMPLE
CT_PATIENT = PatientSpec("RP-CT-0001", "Иванов^Пётр^Сергеевич", "19580312", "M")
CT_SLICES = 5


@pytest.fixture(scope="module")
def pacs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[WebServer, Orthanc, str]]:
    """City Hospital's PACS (Orthanc, AE CITY_PACS) holding four studies, and Consilium
    configured with that PACS; REG_PACS points at a port nobody listens on, REG_ARCHIVE at
    Orthanc under another AE title (Orthanc refuses the association). Yields the web
    server, Orthanc and the generated CT's Study Instance UID."""
    work = tmp_path_factory.mktemp("remote")
    ct_files = write_ct_series(
        StudySpec(CT_PATIENT, "20260311", accession="CITY-A-77", description="CT CHEST"),
        work / "ct", slices=CT_SLICES, rows=128, columns=128, uid_seed="remote-pacs-test")
    ct_study = str(dcmread(ct_files[0], stop_before_pixels=True).StudyInstanceUID)
    web_dicom_port = free_port()
    orthanc = Orthanc(work / "orthanc", ae_title="CITY_PACS",
                      modalities={"CONSILIUM": ("127.0.0.1", web_dicom_port)})
    env = institutions_env({"CITY_PACS": orthanc.dicom_port, "REG_PACS": free_port()})
    institutions = json.loads(env["CONSILIUM_INSTITUTIONS"])
    regional = next(i for i in institutions if i["id"] == "regional-center")
    regional["nodes"].append({"ae_title": "REG_ARCHIVE", "kind": "pacs", "host": "127.0.0.1",
                              "port": orthanc.dicom_port})  # Orthanc, but not its AE title
    env["CONSILIUM_INSTITUTIONS"] = json.dumps(institutions)
    web = WebServer(work / "var", dicom_port=web_dicom_port, extra_env={
        **env, "CONSILIUM_IDENTITY_LOGIN_ATTEMPTS_PER_MINUTE": "1000",
        "CONSILIUM_DICOM_REMOTE_TIMEOUT": "10"})
    orthanc.start()
    try:
        files = [RUSSIAN, CHINESE, pydicom_data_dir() / "test_files" / "CT_small.dcm",
                 *ct_files]
        sent = dcmtk("storescu", "-aet", "STORESCU", "-aec", "CITY_PACS", "127.0.0.1",
                     str(orthanc.dicom_port), *map(str, files), timeout=120)
        assert sent.returncode == 0, sent.stderr
        assert orthanc.get("/statistics")["CountInstances"] == len(files)
        web.start()
        try:
            yield web, orthanc, ct_study
        finally:
            web.stop()
    finally:
        orthanc.stop()


def audit_rows(web: WebServer, actor: str) -> list[dict[str, Any]]:
    with sqlite3.connect(web.data_dir / "consilium.db") as conn:
        conn.row_factory = sqlite3.Row
        rows = conn.execute("SELECT action, outcome, study_uid, patient_id, detail "
                            "FROM audit_event WHERE actor = ? ORDER BY id", (actor,)).fetchall()
    return [dict(r) | {"detail": json.loads(r["detail"]) if r["detail"] else {}}
            for r in rows]


def find(client: httpx.Client, ae_title: str = "CITY_PACS", **params: str) -> httpx.Response:
    return client.get(f"/api/remote/pacs/{ae_title}/studies", params=params)


def dataset_digest(part10: bytes) -> str:
    """SHA-256 of the dataset after the file meta (each archive writes its own meta)."""
    return hashlib.sha256(part10[split_part10(part10).dataset_offset:]).hexdigest()


# -- without the network -----------------------------------------------------------------------


def test_filters_parse_and_identifier() -> None:
    filters = StudyFilters.parse({"PatientName": " иванов* ", "StudyDate": "20260101-",
                                  "ModalitiesInStudy": "ct, mr"})
    assert filters == StudyFilters(patient_name="иванов*", study_date="20260101-",
                                   modalities=("CT", "MR"))
    identifier = study_identifier(filters)
    assert identifier.SpecificCharacterSet == "ISO_IR 192"
    assert identifier.QueryRetrieveLevel == "STUDY"
    assert list(identifier.ModalitiesInStudy) == ["CT", "MR"]
    assert identifier.StudyInstanceUID == "" and identifier.NumberOfStudyRelatedInstances == ""
    assert StudyFilters.parse({}).empty
    for bad in ({"StudyDate": "2026"}, {"StudyDate": "-"}, {"PatientID": "a\\b"},
                {"ModalitiesInStudy": "C T;"}, {"AccessionNumber": "x" * 17}):
        with pytest.raises(InvalidInput):
            StudyFilters.parse(bad)


# -- who may query which PACS ------------------------------------------------------------------


def test_clinicians_list_only_their_own_institutions_pacs(pacs: tuple[WebServer, Orthanc, str]
                                                          ) -> None:
    web, _orthanc, _study = pacs
    assert web.client().get("/api/remote/pacs").status_code == 401
    listed = web.login("ivanova").get("/api/remote/pacs").json()
    assert listed == [{"ae_title": "CITY_PACS", "institution": "city-hospital",
                       "institution_name": "City Clinical Hospital No. 1",
                       "description": "Hospital PACS (Orthanc)"}]
    assert [p["ae_title"] for p in web.login("orlov").get("/api/remote/pacs").json()] == [
        "REG_PACS", "REG_ARCHIVE"]
    assert web.login("city-admin").get("/api/remote/pacs").json() == []


def test_refusals(pacs: tuple[WebServer, Orthanc, str]) -> None:
    web, _orthanc, ct_study = pacs
    assert find(web.client(), PatientID="RP-CT-0001").status_code == 401
    ivanova = web.login("ivanova")
    no_filter = find(ivanova)
    assert no_filter.status_code == 400 and "filter" in no_filter.json()["error"]
    assert find(ivanova, StudyDate="yesterday").status_code == 400
    assert find(ivanova, "NO_SUCH_PACS", PatientID="X").status_code == 404
    assert find(ivanova, "CITY_CT1", PatientID="X").status_code == 404  # a modality, no PACS
    assert find(ivanova, "REG_PACS", PatientID="X").status_code == 403
    orlov = web.login("orlov")  # a regional doctor may not browse a hospital's PACS
    assert find(orlov, PatientID="RP-CT-0001").status_code == 403
    foreign = orlov.post(f"/api/remote/pacs/CITY_PACS/studies/{ct_study}/retrieve",
                         headers={"X-CSRF-Token": csrf_of(orlov)})
    assert foreign.status_code == 403
    admin = web.login("city-admin")  # no patient data by role alone
    assert find(admin, PatientID="RP-CT-0001").status_code == 403
    denied = [r for r in audit_rows(web, "dev:orlov") if r["action"] == "denied"]
    assert [(r["outcome"], r["detail"]["what"], r["detail"]["pacs"]) for r in denied] == [
        ("denied", "remote query", "CITY_PACS"), ("denied", "remote retrieve", "CITY_PACS")]
    assert denied[1]["study_uid"] == ct_study
    assert [r["action"] for r in audit_rows(web, "dev:city-admin")
            if r["action"] != "login"] == ["denied"]


# -- query and retrieve ------------------------------------------------------------------------


def test_query_by_patient_id(pacs: tuple[WebServer, Orthanc, str]) -> None:
    web, _orthanc, ct_study = pacs
    ivanova = web.login("ivanova")
    answer = find(ivanova, PatientID="RP-CT-0001")
    assert answer.status_code == 200, answer.text
    assert answer.json() == [{
        "study_uid": ct_study, "patient_id": "RP-CT-0001",
        "patient_name": "Иванов^Пётр^Сергеевич", "patient_birth_date": "19580312",
        "study_date": "20260311", "description": "CT CHEST", "accession": "CITY-A-77",
        "modalities": ["CT"], "series": 1, "instances": CT_SLICES, "in_archive": False}]
    assert find(ivanova, PatientID="*", PatientName="**").status_code == 400  # universal
    # (Orthanc lets studies without a date match a range too)
    dated = [s["patient_id"] for s in find(ivanova, StudyDate="-20991231").json()]
    assert dated[:2] == ["RP-CT-0001", "1CT1"]  # newest first, undated ones after
    other = find(ivanova, ModalitiesInStudy="OT,MR").json()
    assert sorted(s["patient_id"] for s in other) == ["SCSRUSS", "X1EXAMPLE"]
    by_modality = find(ivanova, ModalitiesInStudy="CT", StudyDate="20260101-20261231").json()
    assert [s["study_uid"] for s in by_modality] == [ct_study]
    query = next(r for r in audit_rows(web, "dev:ivanova") if r["action"] == "query"
                 and r["detail"].get("keys") == {"PatientID": "RP-CT-0001"})
    assert query["outcome"] == "success" and query["patient_id"] == "RP-CT-0001"
    assert query["detail"] == {"service": "C-FIND SCU", "pacs": "CITY_PACS",
                               "keys": {"PatientID": "RP-CT-0001"}, "matches": 1}


def test_query_by_name_in_other_scripts(pacs: tuple[WebServer, Orthanc, str]) -> None:
    web, _orthanc, ct_study = pacs
    ivanova = web.login("ivanova")
    lower = find(ivanova, PatientName="иванов*").json()  # Orthanc matches names ignoring case
    assert [(s["study_uid"], s["patient_name"]) for s in lower] == [
        (ct_study, "Иванов^Пётр^Сергеевич")]
    russian = find(ivanova, PatientName="Люк*").json()  # stored as ISO_IR 144 (ISO 8859-5)
    assert [(s["patient_id"], s["patient_name"]) for s in russian] == [
        ("SCSRUSS", "Люкceмбypг")]
    chinese = find(ivanova, PatientName="*小東*").json()
    assert [(s["patient_id"], s["patient_name"]) for s in chinese] == [
        ("X1EXAMPLE", "Wang^XiaoDong=王^小東")]
    assert find(ivanova, PatientName="Nobody*").json() == []


def test_retrieve_into_the_archive_byte_identical(pacs: tuple[WebServer, Orthanc, str]) -> None:
    web, orthanc, ct_study = pacs
    ivanova = web.login("ivanova")
    url = f"/api/remote/pacs/CITY_PACS/studies/{ct_study}/retrieve"
    assert ivanova.post(url).status_code == 403  # a cookie write without the CSRF token
    assert ivanova.post("/api/remote/pacs/CITY_PACS/studies/not-a-uid/retrieve",
                        headers={"X-CSRF-Token": csrf_of(ivanova)}).status_code == 400
    russian_study = str(dcmread(RUSSIAN, stop_before_pixels=True).StudyInstanceUID)
    for study_uid, count in ((ct_study, CT_SLICES), (russian_study, 1)):
        moved = ivanova.post(f"/api/remote/pacs/CITY_PACS/studies/{study_uid}/retrieve",
                             headers={"X-CSRF-Token": csrf_of(ivanova)})
        assert moved.status_code == 200, moved.text
        assert moved.json() == {"study_uid": study_uid, "completed": count, "failed": 0,
                                "warning": 0, "in_archive": True}

    listed = {s["study_uid"]: s for s in ivanova.get("/api/studies").json()}
    assert listed[ct_study]["institution_id"] == "city-hospital"
    assert listed[ct_study]["num_instances"] == CT_SLICES
    assert listed[russian_study]["patient_name"] == "Люкceмбypг"
    assert [s["in_archive"] for s in find(ivanova, PatientID="RP-CT-0001").json()] == [True]
    assert web.login("orlov").get("/api/studies").json() == []  # still City Hospital's only

    with sqlite3.connect(web.data_dir / "consilium.db") as conn:
        ours = dict(conn.execute("SELECT sop_uid, path FROM instance").fetchall())
    for study_uid in (ct_study, russian_study):
        found = httpx.post(f"{orthanc.url}/tools/find", json={
            "Level": "Instance", "Query": {"StudyInstanceUID": study_uid},
            "Expand": True}, timeout=30).json()
        assert found
        for instance in found:
            theirs = orthanc.file(instance["ID"])
            sop_uid = instance["MainDicomTags"]["SOPInstanceUID"]
            stored = (web.data_dir / "dicom" / ours[sop_uid]).read_bytes()
            assert dataset_digest(stored) == dataset_digest(theirs), sop_uid

    fetched = [r for r in audit_rows(web, "dev:ivanova") if r["action"] == "fetch"]
    assert [(r["outcome"], r["study_uid"]) for r in fetched] == [
        ("success", ct_study), ("success", russian_study)]
    assert fetched[0]["patient_id"] == "RP-CT-0001"  # named from the index after the move
    assert fetched[0]["detail"]["completed"] == CT_SLICES
    assert fetched[0]["detail"]["pacs"] == "CITY_PACS"
    # the PACS's C-STOREs, as its institution's: audited when its association closes
    wanted = {("store", ct_study), ("store", russian_study)}
    deadline = time.monotonic() + 10
    while True:
        stores = {(r["action"], r["study_uid"]) for r in audit_rows(web, "AE:CITY_PACS")}
        if stores == wanted or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert stores == wanted

    unknown = ivanova.post("/api/remote/pacs/CITY_PACS/studies/1.2.3.4.5.6.7/retrieve",
                           headers={"X-CSRF-Token": csrf_of(ivanova)})
    assert unknown.status_code == 502  # Orthanc: 0xC000, unable to process
    assert "0xC000" in unknown.json()["error"]
    last = audit_rows(web, "dev:ivanova")[-1]
    assert (last["action"], last["outcome"], last["study_uid"]) == (
        "fetch", "failure", "1.2.3.4.5.6.7")


def test_unreachable_pacs_answers_502(pacs: tuple[WebServer, Orthanc, str]) -> None:
    """Last in this module: it stops Orthanc."""
    web, orthanc, ct_study = pacs
    orlov = web.login("orlov")  # REG_PACS: a port nobody listens on
    down = find(orlov, "REG_PACS", PatientID="X")
    assert down.status_code == 502
    assert "REG_PACS" in down.json()["error"] and "cannot be reached" in down.json()["error"]
    refused = find(orlov, "REG_ARCHIVE", PatientID="X")  # called AE title not Orthanc's
    assert refused.status_code == 502
    assert "REG_ARCHIVE" in refused.json()["error"]
    assert "refused the association" in refused.json()["error"]
    orthanc.stop()
    ivanova = web.login("ivanova")
    query = find(ivanova, PatientID="RP-CT-0001")
    assert query.status_code == 502 and "CITY_PACS" in query.json()["error"]
    moved = ivanova.post(f"/api/remote/pacs/CITY_PACS/studies/{ct_study}/retrieve",
                         headers={"X-CSRF-Token": csrf_of(ivanova)})
    assert moved.status_code == 502 and "cannot be reached" in moved.json()["error"]
    failures = [(r["action"], r["detail"].get("error", "")) for r in audit_rows(
        web, "dev:ivanova") if r["outcome"] == "failure"][-2:]
    assert [a for a, _ in failures] == ["query", "fetch"]
    assert all("cannot be reached" in error for _, error in failures)
