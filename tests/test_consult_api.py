"""The consult API over HTTP with real logins: hospital A asks, hospital B answers, the images
are shared exactly while the case says so."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import CONFIG, CONSILIUM, pydicom_data_dir
from tests.webserver import WebServer, csrf_of

DATA = pydicom_data_dir()
CITY_STUDY = "1.3.6.1.4.1.5962.1.2.1.20040119072730.12322"  # CT_small.dcm


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebServer]:
    data_dir = tmp_path_factory.mktemp("consult") / "var"
    subprocess.run([str(CONSILIUM), "import", "--config", str(CONFIG), "--data-dir",
                    str(data_dir), "--institution", "city-hospital", "--quiet",
                    str(DATA / "test_files" / "CT_small.dcm")], check=True, capture_output=True)
    server = WebServer(data_dir, extra_env={
        "CONSILIUM_IDENTITY_LOGIN_ATTEMPTS_PER_MINUTE": "1000"}).start()
    yield server
    server.stop()


def post(client: httpx.Client, path: str, body: dict[str, object]) -> httpx.Response:
    return client.post(path, json=body, headers={"X-CSRF-Token": csrf_of(client)})


def test_a_case_from_question_to_signed_conclusion(web: WebServer) -> None:
    referring = web.login("ivanova")
    consultant = web.login("kuznetsova")
    metadata = f"/dicom-web/studies/{CITY_STUDY}/metadata"
    assert consultant.get(metadata).status_code == 404

    created = post(referring, "/api/cases", {
        "question": "Узел в верхней доле правого лёгкого: злокачественный?",
        "study_uids": [CITY_STUDY], "target_institution": "regional-center",
        "priority": "urgent", "target_specialty": "radiology"})
    assert created.status_code == 200, created.text
    case = created.json()
    assert (case["status"], case["patient_id"], case["version"]) == ("draft", "1CT1", 1)
    case_id = case["id"]
    assert consultant.get(f"/api/cases/{case_id}").status_code == 404  # a draft is private

    submitted = post(referring, f"/api/cases/{case_id}/submit", {"version": 1}).json()
    assert submitted["status"] == "submitted" and submitted["due_at"]
    inbox = consultant.get("/api/cases").json()["inbox"]
    assert [c["id"] for c in inbox] == [case_id]
    assert consultant.get(metadata).status_code == 200  # shared with the target now

    stale = post(consultant, f"/api/cases/{case_id}/accept", {"version": 1})
    assert stale.status_code == 409 and "changed since" in stale.json()["error"]
    accepted = post(consultant, f"/api/cases/{case_id}/accept", {"version": 2})
    assert accepted.json()["assignee_subject"] == "dev:kuznetsova"
    assert post(consultant, f"/api/cases/{case_id}/messages",
                {"text": "Есть ли предыдущее КТ?"}).status_code == 200
    early_close = post(referring, f"/api/cases/{case_id}/close", {})
    assert early_close.status_code == 409
    signed = post(consultant, f"/api/cases/{case_id}/conclude", {
        "findings": "Спикулированный узел 14 мм.", "impression": "Подозрение на рак.",
        "recommendations": "ПЭТ-КТ, биопсия."})
    assert signed.status_code == 200 and signed.json()["version"] == 1
    seen = referring.get(f"/api/cases/{case_id}").json()
    assert seen["case"]["status"] == "concluded"
    assert [c["impression"] for c in seen["conclusions"]] == ["Подозрение на рак."]
    assert [m["text"] for m in seen["messages"]] == ["Есть ли предыдущее КТ?"]
    history = referring.get(f"/api/cases/{case_id}/history").json()
    assert [(e["kind"], e["actor"]) for e in history if e["kind"] != "viewed"] == [
        ("created", "dev:ivanova"), ("submitted", "dev:ivanova"),
        ("accepted", "dev:kuznetsova"), ("message", "dev:kuznetsova"),
        ("concluded", "dev:kuznetsova")]
    assert post(referring, f"/api/cases/{case_id}/close", {}).json()["status"] == "closed"


def test_bad_requests_and_outsiders(web: WebServer) -> None:
    referring = web.login("ivanova")
    assert web.client().get("/api/cases").status_code == 401
    no_csrf = referring.post("/api/cases", json={"question": "q"})
    assert no_csrf.status_code == 403
    assert post(referring, "/api/cases", {"question": "q"}).status_code == 400
    foreign = post(referring, "/api/cases", {
        "question": "q", "study_uids": ["1.2.3.4"], "target_institution": "regional-center"})
    assert foreign.status_code == 403
    bad_priority = post(referring, "/api/cases", {
        "question": "q", "study_uids": [CITY_STUDY], "target_institution": "regional-center",
        "priority": "whenever"})
    assert bad_priority.status_code == 400
    case_id = post(referring, "/api/cases", {
        "question": "q", "study_uids": [CITY_STUDY],
        "target_institution": "regional-center"}).json()["id"]
    other = web.login("petrov")  # same hospital, not the requester, not a head
    assert other.get(f"/api/cases/{case_id}").status_code == 404
    assert post(referring, f"/api/cases/{case_id}/fly", {}).status_code == 400
    cancelled = post(referring, f"/api/cases/{case_id}/cancel", {})
    assert cancelled.json()["status"] == "cancelled"


def test_parties_are_notified_live(web: WebServer) -> None:
    import threading

    import socketio

    referring = web.login("ivanova")
    consultant = web.login("kuznetsova")
    received: dict[str, list[dict[str, object]]] = {"consultant": [], "referring": []}
    arrived = threading.Condition()
    clients = []
    for who, http in (("consultant", consultant), ("referring", referring)):
        client = socketio.Client(reconnection=False)

        def on_update(data: dict[str, object], who: str = who) -> None:
            with arrived:
                received[who].append(data)
                arrived.notify_all()

        client.on("case:updated", on_update)
        client.connect(web.url, transports=["websocket"], wait_timeout=5, headers={
            "Cookie": f"consilium_session={http.cookies['consilium_session']}"})
        clients.append(client)

    def wait_for(who: str, status: str) -> dict[str, object]:
        with arrived:
            arrived.wait_for(lambda: any(e["status"] == status for e in received[who]),
                             timeout=10)
        return next(e for e in received[who] if e["status"] == status)

    try:
        case_id = post(referring, "/api/cases", {
            "question": "q", "study_uids": [CITY_STUDY],
            "target_institution": "regional-center"}).json()["id"]
        post(referring, f"/api/cases/{case_id}/submit", {})
        event = wait_for("consultant", "submitted")  # appears in the inbox without reloading
        assert event["id"] == case_id and event["what"] == "submit"
        assert "patient_id" not in event and "question" not in event
        assert not any(e["status"] == "draft" for e in received["consultant"])
        post(consultant, f"/api/cases/{case_id}/accept", {})
        assert wait_for("referring", "accepted")["id"] == case_id
    finally:
        for client in clients:
            client.disconnect()


def test_heads_see_history_and_turnaround(web: WebServer) -> None:
    referring = web.login("ivanova")
    consultant = web.login("kuznetsova")
    case_id = post(referring, "/api/cases", {
        "question": "q", "study_uids": [CITY_STUDY], "target_institution": "regional-center",
        "target_specialty": "radiology"}).json()["id"]
    post(referring, f"/api/cases/{case_id}/submit", {})
    post(consultant, f"/api/cases/{case_id}/accept", {})
    head = web.login("morozov")  # head of the receiving institution
    listed = head.get("/api/history/cases", params={"specialty": "radiology"}).json()
    assert case_id in [c["id"] for c in listed]
    figures = head.get("/api/history/turnaround").json()
    radiology = [f for f in figures if f["specialty"] == "radiology"]
    assert radiology and radiology[0]["accepted"] >= 1
    assert radiology[0]["to_acceptance_median_h"] is not None
    csv_text = head.get("/api/history/turnaround", params={"format": "csv"}).text
    assert csv_text.startswith("\ufefftarget_institution,specialty,month")  # BOM for Excel
    assert consultant.get("/api/history/cases").status_code == 403
    assert web.client().get("/api/history/cases").status_code == 401
