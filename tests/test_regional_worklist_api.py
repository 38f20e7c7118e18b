"""Scheduled procedures through the API (booking, editing, cancelling, who may), the images that
arrive matched to their item by study UID + accession number (a contradiction flagged), and
MPPS moving the item along, called as the DIMSE handlers call it."""

from __future__ import annotations

import io
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset

from consilium.archive import mpps, worklist
from consilium.archive.ingest import IngestSource, ingest_part10
from consilium.archive.worklist_models import MatchState
from consilium.errors import Conflict, InvalidInput, NotFound
from tests.inprocess import DATA, InProcess, in_process

BOOKING = {
    "patient_id": "CITY-7788", "patient_name": "Соколова^Мария^Ивановна",
    "patient_birth_date": "1971-05-02", "patient_sex": "F", "modality": "ct",
    "scheduled_station_ae": "CITY_CT1", "scheduled_date": "2026-12-07",
    "scheduled_time": "09:30", "requested_procedure_description": "КТ грудной клетки",
    "step_description": "CT chest", "accession_number": "CITY-A-1001",
}


@pytest.fixture
def world(tmp_path: Path) -> Iterator[InProcess]:
    with in_process(tmp_path / "var") as w:
        yield w


def book(world: InProcess, user: str = "ivanova", **changes: str) -> dict[str, object]:
    response = world.login(user).post("/api/scheduled-procedures", json={**BOOKING, **changes})
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_booking_normalises_and_is_listed_with_its_study_uid(world: InProcess) -> None:
    item = book(world)
    assert item["modality"] == "CT"
    assert item["scheduled_date"] == "20261207" and item["scheduled_time"] == "0930"
    assert item["patient_birth_date"] == "19710502"
    assert item["status"] == "scheduled" and item["match"] == "waiting"
    assert str(item["study_uid"]).startswith("2.25.")
    listed = world.login("petrov").get("/api/scheduled-procedures",
                                       params={"from": "20261201", "to": "20261231"}).json()
    assert [i["accession_number"] for i in listed] == ["CITY-A-1001"]
    assert world.login("petrov").get("/api/scheduled-procedures",
                                     params={"from": "20261208"}).json() == []


def test_bad_bookings_are_refused_naming_the_field(world: InProcess) -> None:
    client = world.login("ivanova")
    for field, value in (("scheduled_date", "2026-02-30"), ("modality", "C\\T"),
                         ("patient_sex", "X"), ("scheduled_station_ae", "A" * 17),
                         ("accession_number", "A" * 17)):
        response = client.post("/api/scheduled-procedures", json={**BOOKING, field: value})
        assert response.status_code == 400, (field, response.text)
        assert field in response.json()["error"]
    book(world)
    again = client.post("/api/scheduled-procedures", json=BOOKING)
    assert again.status_code == 409 and "CITY-A-1001" in again.json()["error"]


def test_who_may_book_and_see(world: InProcess) -> None:
    item = book(world)
    assert world.login("city-admin").get("/api/scheduled-procedures").status_code == 403
    assert world.anonymous().get("/api/scheduled-procedures").status_code == 401
    other = world.login("kuznetsova")
    assert other.get("/api/scheduled-procedures").json() == []
    foreign = other.get(f"/api/scheduled-procedures/{item['id']}")
    missing = other.get("/api/scheduled-procedures/999999")
    assert foreign.status_code == missing.status_code == 404
    assert foreign.json() == missing.json()
    edit = other.patch(f"/api/scheduled-procedures/{item['id']}",
                       json={"version": item["version"], "patient_name": "X"})
    assert edit.status_code == 404


def test_edit_needs_the_current_version_and_cancel_takes_it_off_the_worklist(
        world: InProcess) -> None:
    item = book(world)
    client = world.login("ivanova")
    url = f"/api/scheduled-procedures/{item['id']}"
    changed = client.patch(url, json={"version": item["version"], "scheduled_time": "1015"})
    assert changed.status_code == 200 and changed.json()["scheduled_time"] == "1015"
    stale = client.patch(url, json={"version": item["version"], "scheduled_time": "1100"})
    assert stale.status_code == 409
    by_hand = client.patch(url, json={"version": changed.json()["version"],
                                      "status": "completed"})
    assert by_hand.status_code == 400
    query = Dataset()
    query.PatientName = "Соколова*"
    assert len(worklist.find_worklist(world.runtime.engine, "city-hospital", query)) == 1
    cancelled = client.patch(url, json={"version": changed.json()["version"],
                                        "status": "cancelled"})
    assert cancelled.json()["status"] == "cancelled"
    assert worklist.find_worklist(world.runtime.engine, "city-hospital", query) == []


def _ct_with(world: InProcess, study_uid: str, accession: str, patient_id: str) -> None:
    ds = dcmread(DATA / "CT_small.dcm")
    ds.StudyInstanceUID = study_uid
    ds.AccessionNumber = accession
    ds.PatientID = patient_id
    ds.SeriesInstanceUID = study_uid + ".1"
    ds.SOPInstanceUID = study_uid + ".1.1"
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    result = ingest_part10(world.runtime.store, buffer.getvalue(),
                           IngestSource("city-hospital"))
    assert result.ok, result.reason


def test_arrivals_are_matched_and_contradictions_flagged(world: InProcess) -> None:
    good = book(world)
    wrong_uid = book(world, accession_number="CITY-A-1002")
    wrong_patient = book(world, accession_number="CITY-A-1003")
    _ct_with(world, str(good["study_uid"]), "CITY-A-1001", "CITY-7788")
    _ct_with(world, "1.2.826.0.1.3680043.8.498.1", "CITY-A-1002", "CITY-7788")
    _ct_with(world, str(wrong_patient["study_uid"]), "CITY-A-1003", "CITY-0000")
    listed = {i["accession_number"]: i for i in world.login("ivanova").get(
        "/api/scheduled-procedures").json()}
    assert listed["CITY-A-1001"]["match"] == MatchState.MATCHED
    assert listed["CITY-A-1002"]["match"] == MatchState.MISMATCH
    assert "1.2.826.0.1.3680043.8.498.1" in listed["CITY-A-1002"]["match_detail"]
    assert listed["CITY-A-1003"]["match"] == MatchState.MISMATCH
    assert "CITY-0000" in listed["CITY-A-1003"]["match_detail"]
    flagged = world.login("ivanova").get("/api/scheduled-procedures",
                                         params={"match": "mismatch"}).json()
    assert sorted(i["accession_number"] for i in flagged) == ["CITY-A-1002", "CITY-A-1003"]
    assert wrong_uid["id"] in [i["id"] for i in flagged]


def _mpps(item: dict[str, object], status: str) -> Dataset:
    ds = Dataset()
    ds.PerformedProcedureStepStatus = status
    attrs = Dataset()
    attrs.AccessionNumber = str(item["accession_number"])
    attrs.StudyInstanceUID = str(item["study_uid"])
    ds.ScheduledStepAttributesSequence = [attrs]
    ds.PatientID = "CITY-7788"
    ds.Modality = "CT"
    return ds


def test_mpps_moves_the_item_and_refuses_what_the_standard_refuses(world: InProcess) -> None:
    item = book(world)
    engine = world.runtime.engine
    step = mpps.create_step(engine, "city-hospital", "CITY_CT1", "1.2.3.100",
                            _mpps(item, "IN PROGRESS"))
    assert step.procedure_id == item["id"]
    client = world.login("ivanova")
    assert client.get(f"/api/scheduled-procedures/{item['id']}").json()["status"] == \
        "in_progress"
    with pytest.raises(mpps.DuplicateStep):
        mpps.create_step(engine, "city-hospital", "CITY_CT1", "1.2.3.100",
                         _mpps(item, "IN PROGRESS"))
    with pytest.raises(InvalidInput):
        mpps.create_step(engine, "city-hospital", "CITY_CT1", "1.2.3.101",
                         _mpps(item, "COMPLETED"))
    with pytest.raises(mpps.MissingAttribute):
        mpps.create_step(engine, "city-hospital", "CITY_CT1", "1.2.3.102", Dataset())
    with pytest.raises(NotFound):
        mpps.set_step(engine, "regional-center", "1.2.3.100", _mpps(item, "COMPLETED"))
    done = _mpps(item, "COMPLETED")
    series = Dataset()
    series.SeriesInstanceUID = "1.2.3.200"
    ref = Dataset()
    ref.ReferencedSOPInstanceUID = "1.2.3.200.1"
    series.ReferencedImageSequence = [ref]
    done.PerformedSeriesSequence = [series]
    mpps.set_step(engine, "city-hospital", "1.2.3.100", done)
    with pytest.raises(Conflict):
        mpps.set_step(engine, "city-hospital", "1.2.3.100", _mpps(item, "DISCONTINUED"))
    answer = client.get(f"/api/scheduled-procedures/{item['id']}").json()
    assert answer["status"] == "completed" and answer["performed_status"] == "COMPLETED"
    steps = client.get(f"/api/scheduled-procedures/{item['id']}/steps").json()
    assert steps[0]["series"] == {"1.2.3.200": ["1.2.3.200.1"]}
    assert worklist.find_worklist(engine, "city-hospital", Dataset()) == []


def test_every_booking_and_list_is_audited(world: InProcess) -> None:
    item = book(world)
    world.login("ivanova").get("/api/scheduled-procedures")
    world.runtime.audit.flush()
    with sqlite3.connect(world.runtime.settings.data_dir / "consilium.db") as conn:
        rows = conn.execute("SELECT action, patient_id, study_uid, data_institution FROM "
                            "audit_event WHERE actor = 'dev:ivanova' ORDER BY id").fetchall()
    assert ("schedule", "CITY-7788", item["study_uid"], "city-hospital") in rows
    assert any(action == "query" for action, *_ in rows)
