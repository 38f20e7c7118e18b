"""Where a request can go (the directory of consult targets), key images checked against the
archive, and the case timeline merged with who opened its images."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import CONFIG, CONSILIUM, pydicom_data_dir
from tests.webserver import WebServer, csrf_of

DATA = pydicom_data_dir()
CITY_STUDY = "1.3.6.1.4.1.5962.1.2.1.20040119072730.12322"  # CT_small.dcm
CITY_IMAGE = "1.3.6.1.4.1.5962.1.1.1.1.1.20040119072730.12322"
MR_STUDY = "1.3.6.1.4.1.5962.1.2.4.20040826185059.5457"  # MR_small.dcm


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebServer]:
    data_dir = tmp_path_factory.mktemp("directory") / "var"
    subprocess.run([str(CONSILIUM), "import", "--config", str(CONFIG), "--data-dir",
                    str(data_dir), "--institution", "city-hospital", "--quiet",
                    str(DATA / "test_files" / "CT_small.dcm"),
                    str(DATA / "test_files" / "MR_small.dcm")],
                   check=True, capture_output=True)
    server = WebServer(data_dir, extra_env={
        "CONSILIUM_IDENTITY_LOGIN_ATTEMPTS_PER_MINUTE": "1000"}).start()
    yield server
    server.stop()


def post(client: httpx.Client, path: str, body: dict[str, object]) -> httpx.Response:
    return client.post(path, json=body, headers={"X-CSRF-Token": csrf_of(client)})


def test_directory_lists_other_institutions_and_their_consultants(web: WebServer) -> None:
    assert web.client().get("/api/directory").status_code == 401
    assert web.login("city-admin").get("/api/directory").status_code == 403
    web.login("kuznetsova")  # consultants become known at their first login
    web.login("orlov")  # a referring doctor: not a consult target
    listing = web.login("ivanova").get("/api/directory")
    assert listing.status_code == 200
    institutions = listing.json()["institutions"]
    assert [i["id"] for i in institutions] == ["regional-center"]  # never the caller's own
    regional = institutions[0]
    assert regional["name"] == "Regional Diagnostic Center"
    assert regional["specialties"] == ["radiology"]
    assert {"subject": "dev:kuznetsova", "name": "Елена Кузнецова",
            "specialty": "radiology"} in regional["specialists"]
    assert all(s["subject"] != "dev:orlov" for s in regional["specialists"])


def test_colleagues_are_the_consultants_of_the_own_institution(web: WebServer) -> None:
    """Whom a consultant can reassign a case to: colleagues, never themselves or outsiders."""
    assert web.client().get("/api/directory/colleagues").status_code == 401
    assert web.login("city-admin").get("/api/directory/colleagues").status_code == 403
    web.login("morozov")
    web.login("orlov")
    listing = web.login("kuznetsova").get("/api/directory/colleagues")
    assert listing.status_code == 200
    subjects = [c["subject"] for c in listing.json()["colleagues"]]
    assert "dev:morozov" in subjects
    assert "dev:kuznetsova" not in subjects  # not the caller
    assert "dev:orlov" not in subjects  # a referring doctor, not a consultant
    assert "dev:ivanova" not in subjects  # the other hospital
    morozov = web.login("morozov").get("/api/directory/colleagues").json()["colleagues"]
    assert {"subject": "dev:kuznetsova", "name": "Елена Кузнецова",
            "specialty": "radiology"} in morozov


def test_key_images_must_be_images_of_their_study(web: WebServer) -> None:
    referring = web.login("ivanova")
    base: dict[str, Any] = {"question": "q", "study_uids": [CITY_STUDY],
                            "target_institution": "regional-center"}
    wrong_study = post(referring, "/api/cases", {**base, "key_images": {MR_STUDY: [CITY_IMAGE]}})
    assert wrong_study.status_code == 400 and "does not link" in wrong_study.json()["error"]
    not_in_study = post(referring, "/api/cases", {
        **base, "study_uids": [CITY_STUDY, MR_STUDY], "key_images": {MR_STUDY: [CITY_IMAGE]}})
    assert not_in_study.status_code == 400 and "not an image of" in not_in_study.json()["error"]
    assert post(referring, "/api/cases", {**base, "key_images": [CITY_IMAGE]}).status_code == 400
    created = post(referring, "/api/cases", {**base, "key_images": {CITY_STUDY: [CITY_IMAGE]}})
    assert created.status_code == 200, created.text
    detail = referring.get(f"/api/cases/{created.json()['id']}").json()
    assert detail["studies"][0]["key_images"] == [CITY_IMAGE]


def test_timeline_shows_who_opened_the_images(web: WebServer) -> None:
    referring = web.login("ivanova")
    consultant = web.login("kuznetsova")
    case_id = post(referring, "/api/cases", {
        "question": "q", "study_uids": [CITY_STUDY],
        "target_institution": "regional-center"}).json()["id"]
    post(referring, f"/api/cases/{case_id}/submit", {"version": 1}).raise_for_status()
    post(consultant, f"/api/cases/{case_id}/accept", {"version": 2}).raise_for_status()
    frame = consultant.get(f"/dicom-web/studies/{CITY_STUDY}/metadata")
    assert frame.status_code == 200
    # the view was queued for the audit writer; the timeline waits for what was queued
    timeline = referring.get(f"/api/cases/{case_id}/history").json()
    views = [e for e in timeline if e["kind"] == "viewed"]
    kinds = [(e["kind"], e["actor"]) for e in timeline]
    accepted = kinds.index(("accepted", "dev:kuznetsova"))
    assert ("viewed", "dev:kuznetsova") in kinds[accepted + 1:]
    assert views[-1]["study_uid"] == CITY_STUDY
    assert views[-1]["actor_institution"] == "regional-center"
    assert [e["at"] for e in timeline] == sorted(e["at"] for e in timeline)


def patch(client: httpx.Client, path: str, body: dict[str, object]) -> httpx.Response:
    return client.patch(path, json=body, headers={"X-CSRF-Token": csrf_of(client)})


def test_two_editors_of_one_draft_do_not_overwrite_each_other(web: WebServer) -> None:
    requester = web.login("ivanova")
    head = web.login("sidorov")  # the requester's head may edit the department's drafts
    case = post(requester, "/api/cases", {
        "question": "Узел?", "study_uids": [CITY_STUDY],
        "target_institution": "regional-center"}).json()
    path = f"/api/cases/{case['id']}"
    assert patch(requester, path, {"question": "x"}).status_code == 400  # no version
    first = patch(requester, path, {"version": 1, "question": "Узел 14 мм: злокачественный?",
                                    "priority": "urgent"})
    assert first.status_code == 200, first.text
    assert (first.json()["version"], first.json()["priority"]) == (2, "urgent")
    late = patch(head, path, {"version": 1, "clinical_info": "курильщик"})
    assert late.status_code == 409 and "changed since" in late.json()["error"]
    assert requester.get(path).json()["case"]["clinical_info"] == ""  # nothing overwritten
    relinked = patch(head, path, {"version": 2, "study_uids": [CITY_STUDY, MR_STUDY],
                                  "key_images": {CITY_STUDY: [CITY_IMAGE]}})
    assert relinked.status_code == 200, relinked.text
    studies = requester.get(path).json()["studies"]
    assert {s["study_uid"]: s["key_images"] for s in studies} == {
        CITY_STUDY: [CITY_IMAGE], MR_STUDY: []}
    assert patch(requester, path, {"version": 3, "study_uids": ["1.2.3.4"]}).status_code == 403
    outsider = web.login("kuznetsova")
    assert patch(outsider, path, {"version": 3, "question": "?"}).status_code == 404
    post(requester, f"{path}/submit", {"version": 3}).raise_for_status()
    submitted = patch(requester, path, {"version": 4, "clinical_info": "курильщик"})
    assert submitted.status_code == 409 and "is submitted" in submitted.json()["error"]
    post(outsider, f"{path}/return", {"version": 4, "request": "Стаж курения?"}
         ).raise_for_status()
    moved = patch(requester, path, {"version": 5, "target_institution": "city-hospital"})
    assert moved.status_code == 409 and "only while the case is a draft" in moved.json()["error"]
    answered = patch(requester, path, {"version": 5, "clinical_info": "курит 30 лет"})
    assert answered.status_code == 200 and answered.json()["status"] == "returned"
    timeline = requester.get(f"{path}/history").json()
    edits = [e for e in timeline if e["kind"] == "edited"]
    assert [e["actor"] for e in edits] == ["dev:ivanova", "dev:sidorov", "dev:ivanova"]
    assert "study_uids" in edits[1]["detail"]


def test_the_conclusion_draft_over_http(web: WebServer) -> None:
    requester = web.login("ivanova")
    consultant = web.login("kuznetsova")
    case_id = post(requester, "/api/cases", {
        "question": "q", "study_uids": [CITY_STUDY],
        "target_institution": "regional-center"}).json()["id"]
    post(requester, f"/api/cases/{case_id}/submit", {"version": 1}).raise_for_status()
    post(consultant, f"/api/cases/{case_id}/accept", {"version": 2}).raise_for_status()
    path = f"/api/cases/{case_id}/conclusion-draft"
    assert consultant.get(path).json() == {"draft": None}
    text: dict[str, object] = {"findings": "Узел 14 мм.", "impression": "Подозрение на рак.",
                               "recommendations": ""}
    saved = consultant.put(path, json={"version": None, **text},
                           headers={"X-CSRF-Token": csrf_of(consultant)})
    assert saved.status_code == 200 and saved.json()["draft"]["version"] == 1
    assert consultant.put(path, json={"version": 1, **text}).status_code == 403  # no CSRF token
    stale = consultant.put(path, json={"version": None, **text},
                           headers={"X-CSRF-Token": csrf_of(consultant)})
    assert stale.status_code == 409
    assert requester.get(path).status_code == 403  # a draft opinion stays with its author
    assert consultant.get(path).json()["draft"]["findings"] == "Узел 14 мм."
    post(consultant, f"/api/cases/{case_id}/conclude", text).raise_for_status()
    assert consultant.get(path).json() == {"draft": None}
