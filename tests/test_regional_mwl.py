"""The Modality Worklist and MPPS over DICOM, against a real ``consilium serve``: dcmtk's
``findscu -W`` asks for the scheduled procedures with the usual matching keys (scheduled date
range, modality, station AE title, a Cyrillic patient name), a pynetdicom MPPS SCU reports IN
PROGRESS / COMPLETED / DISCONTINUED (and the refusals PS3.4 asks for), and the images that arrive
are matched to their item."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pynetdicom import AE

from consilium.synthetic import PatientSpec, StudySpec, write_ct_series
from tests.conftest import dcmtk
from tests.webserver import WebServer, csrf_of

MPPS = "1.2.840.10008.3.1.2.3.3"
BOOKINGS = [
    {"patient_id": "CITY-MWL-1", "patient_name": "Соколова^Мария^Ивановна",
     "patient_birth_date": "19710502", "patient_sex": "F", "modality": "CT",
     "scheduled_station_ae": "CITY_CT1", "scheduled_date": "20261207", "scheduled_time": "0930",
     "requested_procedure_description": "КТ грудной клетки", "accession_number": "MWL-1"},
    {"patient_id": "CITY-MWL-2", "patient_name": "Smith^John", "modality": "MR",
     "scheduled_station_ae": "CITY_MR1", "scheduled_date": "20261207", "scheduled_time": "1100",
     "accession_number": "MWL-2"},
    {"patient_id": "CITY-MWL-3", "patient_name": "Соколов^Пётр", "modality": "CT",
     "scheduled_station_ae": "CITY_CT1", "scheduled_date": "20261209", "scheduled_time": "0800",
     "accession_number": "MWL-3"},
]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[WebServer, dict[str, Any]]]:
    web = WebServer(tmp_path_factory.mktemp("mwl") / "var", extra_env={
        "CONSILIUM_IDENTITY_LOGIN_ATTEMPTS_PER_MINUTE": "1000"}).start()
    try:
        registrar = web.login("ivanova")
        booked = {}
        for body in BOOKINGS:
            answer = registrar.post("/api/scheduled-procedures", json=body,
                                    headers={"X-CSRF-Token": csrf_of(registrar)})
            assert answer.status_code == 200, answer.text
            booked[body["accession_number"]] = answer.json()
        yield web, booked
    finally:
        web.stop()


def worklist(web: WebServer, tmp: Path, calling_ae: str, *keys: str) -> list[Dataset]:
    """``findscu -W`` as a modality asks: the keys given, the rest returned empty."""
    out = tmp / f"mwl-{time.monotonic_ns()}"
    out.mkdir()
    asked = ["-k", "SpecificCharacterSet=ISO_IR 192", "-k", "PatientName", "-k", "PatientID",
             "-k", "AccessionNumber", "-k", "StudyInstanceUID",
             "-k", "RequestedProcedureDescription",
             "-k", "ScheduledProcedureStepSequence[0].Modality",
             "-k", "ScheduledProcedureStepSequence[0].ScheduledStationAETitle",
             "-k", "ScheduledProcedureStepSequence[0].ScheduledProcedureStepStartDate",
             "-k", "ScheduledProcedureStepSequence[0].ScheduledProcedureStepStartTime"]
    for key in keys:
        asked += ["-k", key]
    run = dcmtk("findscu", "-W", "-aet", calling_ae, "-aec", "CONSILIUM", "-X", "-od",
                str(out), *asked, "127.0.0.1", str(web.dicom_port))
    assert run.returncode == 0, run.stderr
    return [dcmread(p) for p in sorted(out.glob("rsp*.dcm"))]


def test_findscu_reads_the_worklist_with_the_usual_keys(
        world: tuple[WebServer, dict[str, Any]], tmp_path: Path) -> None:
    web, booked = world
    found = worklist(web, tmp_path, "CITY_CT1",
                     "ScheduledProcedureStepSequence[0].Modality=CT",
                     "ScheduledProcedureStepSequence[0].ScheduledStationAETitle=CITY_CT1",
                     "ScheduledProcedureStepSequence[0].ScheduledProcedureStepStartDate="
                     "20261207-20261208",
                     "PatientName=Соколова*")
    assert len(found) == 1
    item = found[0]
    assert str(item.PatientName) == "Соколова^Мария^Ивановна"
    assert item.AccessionNumber == "MWL-1"
    assert item.StudyInstanceUID == booked["MWL-1"]["study_uid"]
    assert item.RequestedProcedureDescription == "КТ грудной клетки"
    step = item.ScheduledProcedureStepSequence[0]
    assert (step.Modality, step.ScheduledStationAETitle, step.ScheduledProcedureStepStartDate,
            step.ScheduledProcedureStepStartTime) == ("CT", "CITY_CT1", "20261207", "0930")

    # each key narrows: a lower-case Cyrillic pattern, a later day, another modality
    names = {str(d.PatientName) for d in worklist(web, tmp_path, "CITY_CT1",
                                                  "PatientName=соколов*")}
    assert names == {"Соколова^Мария^Ивановна", "Соколов^Пётр"}
    later = worklist(web, tmp_path, "CITY_CT1", "ScheduledProcedureStepSequence[0]."
                     "ScheduledProcedureStepStartDate=20261209-")
    assert [d.AccessionNumber for d in later] == ["MWL-3"]
    mr = worklist(web, tmp_path, "CITY_MR1", "ScheduledProcedureStepSequence[0].Modality=MR")
    assert [d.AccessionNumber for d in mr] == ["MWL-2"]
    assert worklist(web, tmp_path, "CITY_CT1", "ScheduledProcedureStepSequence[0]."
                    "ScheduledStationAETitle=CITY_MR9") == []
    # another institution's scanner sees none of them
    assert worklist(web, tmp_path, "REG_CT1") == []
    assert len(worklist(web, tmp_path, "CITY_CT1")) == 3


def _mpps_ae(calling: str) -> AE:
    ae = AE(ae_title=calling)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    ae.add_requested_context(MPPS)
    return ae


def _step(item: dict[str, Any], status: str) -> Dataset:
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    attrs = Dataset()
    attrs.AccessionNumber = item["accession_number"]
    attrs.StudyInstanceUID = item["study_uid"]
    attrs.ScheduledProcedureStepID = item["step_id"]
    ds.ScheduledStepAttributesSequence = [attrs]
    ds.PatientName = item["patient_name"]
    ds.PatientID = item["patient_id"]
    ds.Modality = item["modality"]
    ds.PerformedStationAETitle = item["scheduled_station_ae"]
    ds.PerformedProcedureStepStartDate = "20261207"
    ds.PerformedProcedureStepStartTime = "093500"
    ds.PerformedProcedureStepStatus = status
    ds.PerformedSeriesSequence = []
    return ds


def _api(web: WebServer, item: dict[str, Any]) -> dict[str, Any]:
    return dict(web.login("ivanova").get(f"/api/scheduled-procedures/{item['id']}").json())


def test_mpps_in_progress_completed_discontinued(
        world: tuple[WebServer, dict[str, Any]], tmp_path: Path) -> None:
    web, booked = world
    ct, mr = booked["MWL-1"], booked["MWL-2"]
    assoc = _mpps_ae("CITY_CT1").associate("127.0.0.1", web.dicom_port, ae_title="CONSILIUM")
    assert assoc.is_established
    try:
        step_uid = generate_uid()
        status, _attrs = assoc.send_n_create(_step(ct, "IN PROGRESS"), MPPS, step_uid)
        assert status.Status == 0x0000
        assert _api(web, ct)["status"] == "in_progress"
        again, _ = assoc.send_n_create(_step(ct, "IN PROGRESS"), MPPS, step_uid)
        assert again.Status == 0x0111  # duplicate SOP instance
        no_status = _step(ct, "IN PROGRESS")
        del no_status.PerformedProcedureStepStatus
        missing, _ = assoc.send_n_create(no_status, MPPS, generate_uid())
        assert missing.Status == 0x0120
        unknown, _ = assoc.send_n_set(_step(ct, "COMPLETED"), MPPS, generate_uid())
        assert unknown.Status == 0x0112

        done = Dataset()
        done.PerformedProcedureStepStatus = "COMPLETED"
        done.PerformedProcedureStepEndDate = "20261207"
        done.PerformedProcedureStepEndTime = "094500"
        series = Dataset()
        series.SeriesInstanceUID = ct["study_uid"] + ".1"
        ref = Dataset()
        ref.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
        ref.ReferencedSOPInstanceUID = ct["study_uid"] + ".1.1"
        series.ReferencedImageSequence = [ref]
        done.PerformedSeriesSequence = [series]
        status, _attrs = assoc.send_n_set(done, MPPS, step_uid)
        assert status.Status == 0x0000
        final, _ = assoc.send_n_set(done, MPPS, step_uid)
        assert final.Status == 0x0110  # may no longer be updated
    finally:
        assoc.release()
    answer = _api(web, ct)
    assert (answer["status"], answer["performed_status"]) == ("completed", "COMPLETED")
    steps = web.login("ivanova").get(f"/api/scheduled-procedures/{ct['id']}/steps").json()
    assert steps[0]["series"] == {ct["study_uid"] + ".1": [ct["study_uid"] + ".1.1"]}
    assert "MWL-1" not in {d.AccessionNumber for d in worklist(web, tmp_path, "CITY_CT1")}

    # the MR is started and abandoned; another institution's scanner cannot touch the step
    assoc = _mpps_ae("CITY_MR1").associate("127.0.0.1", web.dicom_port, ae_title="CONSILIUM")
    try:
        mr_step = generate_uid()
        assert assoc.send_n_create(_step(mr, "IN PROGRESS"), MPPS, mr_step)[0].Status == 0
    finally:
        assoc.release()
    foreign = _mpps_ae("REG_CT1").associate("127.0.0.1", web.dicom_port, ae_title="CONSILIUM")
    try:
        stop = Dataset()
        stop.PerformedProcedureStepStatus = "DISCONTINUED"
        assert foreign.send_n_set(stop, MPPS, mr_step)[0].Status == 0x0112
    finally:
        foreign.release()
    assoc = _mpps_ae("CITY_MR1").associate("127.0.0.1", web.dicom_port, ae_title="CONSILIUM")
    try:
        reason = Dataset()
        reason.CodeValue = "110514"
        reason.CodingSchemeDesignator = "DCM"
        reason.CodeMeaning = "Incorrect worklist entry selected"
        stop.PerformedProcedureStepDiscontinuationReasonCodeSequence = [reason]
        assert assoc.send_n_set(stop, MPPS, mr_step)[0].Status == 0
    finally:
        assoc.release()
    assert _api(web, mr)["status"] == "discontinued"
    steps = web.login("ivanova").get(f"/api/scheduled-procedures/{mr['id']}/steps").json()
    assert steps[0]["discontinuation_reason"] == "Incorrect worklist entry selected"
    time.sleep(0.5)
    with sqlite3.connect(web.data_dir / "consilium.db") as conn:
        rows = conn.execute("SELECT actor, detail FROM audit_event WHERE action = 'schedule' "
                            "AND actor LIKE 'AE:%' ORDER BY id").fetchall()
    assert [a for a, _ in rows] == ["AE:CITY_CT1", "AE:CITY_CT1", "AE:CITY_MR1", "AE:CITY_MR1"]


def test_the_images_that_arrive_are_matched(world: tuple[WebServer, dict[str, Any]],
                                            tmp_path: Path) -> None:
    web, booked = world
    item = booked["MWL-3"]
    files = write_ct_series(StudySpec(PatientSpec("CITY-MWL-3", "Соколов^Пётр", "19600101", "M"),
                                      "20261209", accession="MWL-3"), tmp_path / "ct",
                            slices=2, rows=32, columns=32, uid_seed="mwl-match")
    for path in files:  # as the scanner writes them: the worklist's study UID
        ds = dcmread(path)
        ds.StudyInstanceUID = item["study_uid"]
        ds.save_as(path)
    sent = dcmtk("storescu", "-aet", "CITY_CT1", "-aec", "CONSILIUM", "127.0.0.1",
                 str(web.dicom_port), *map(str, files))
    assert sent.returncode == 0, sent.stderr
    deadline = time.monotonic() + 10
    while _api(web, item)["match"] == "waiting" and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _api(web, item)["match"] == "matched"
    assert httpx.get(f"{web.url}/healthz").json()["instances"] == 2
