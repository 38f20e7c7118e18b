"""Live consilium sessions end to end: a real ``consilium serve``, clinicians logged in through
the demo identity provider, python-socketio participants on ``/consilium``.

The case: a city referring doctor's (ivanova) CT, sent to the regional center. She chairs the
session; petrov (a city consultant, no party to the case) is invited; kuznetsova (a regional
consultant) is a party of the case; orlov (a regional referring doctor) is neither; morozov is
a regional head (a party).
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydicom import dcmread

from consilium.live.sequencer import replay
from consilium.synthetic import PatientSpec, StudySpec, write_ct_series
from tests.conftest import CONFIG, CONSILIUM
from tests.live_client import Participant
from tests.webserver import WebServer, csrf_of

STUDY = StudySpec(PatientSpec("LIVE-001", "Live^Patient"), "20261201", accession="LV1")


@dataclass
class World:
    web: WebServer
    study_uid: str
    series_uid: str
    case_id: int
    users: dict[str, httpx.Client]
    private_study: str = ""  # in no submitted case: granted to nobody

    def post(self, who: str, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
        client = self.users[who]
        return client.post(path, json=body or {}, headers={"X-CSRF-Token": csrf_of(client)})

    def participant(self, who: str) -> Participant:
        return Participant(self.web.url, self.users[who], who)


def _start(data_dir: Path) -> WebServer:
    return WebServer(data_dir, extra_env={
        "CONSILIUM_IDENTITY_LOGIN_ATTEMPTS_PER_MINUTE": "1000",
        "CONSILIUM_LIVE_INVITATION_RETENTION_MINUTES": "0"}).start()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("live")
    paths = write_ct_series(STUDY, root / "ct", slices=24, rows=64, columns=64,
                            uid_seed="live-ct")
    first = dcmread(paths[0], stop_before_pixels=True)
    private = write_ct_series(StudySpec(PatientSpec("LIVE-002", "Live^Private"), "20261202"),
                              root / "private", slices=4, rows=32, columns=32,
                              uid_seed="live-private")
    data_dir = root / "var"
    subprocess.run([str(CONSILIUM), "import", "--config", str(CONFIG), "--data-dir",
                    str(data_dir), "--institution", "city-hospital", "--quiet",
                    str(root / "ct"), str(root / "private")], check=True, capture_output=True)
    web = _start(data_dir)
    try:
        users = {name: web.login(name) for name in
                 ("ivanova", "petrov", "kuznetsova", "orlov", "morozov", "sidorov")}
        world = World(web, str(first.StudyInstanceUID), str(first.SeriesInstanceUID), 0, users,
                      str(dcmread(private[0], stop_before_pixels=True).StudyInstanceUID))
        case = world.post("ivanova", "/api/cases", {
            "question": "Консилиум?", "study_uids": [world.study_uid],
            "target_institution": "regional-center"})
        assert case.status_code == 200, case.text
        world.case_id = case.json()["id"]
        assert world.post("ivanova", f"/api/cases/{world.case_id}/submit").status_code == 200
        yield world
    finally:
        web.stop()


def _session(world: World, invitees: list[str] | None = None, case_id: int | None = None,
             **extra: Any) -> dict[str, Any]:
    answer = world.post("ivanova", f"/api/cases/{case_id or world.case_id}/consilia",
                        {"title": "Tumour board", "invitees": invitees or [], **extra})
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def _stack(world: World, index: int, **extra: Any) -> dict[str, Any]:
    return {"layout": "1x1", "viewports": [{"study_uid": world.study_uid,
                                             "series_uid": world.series_uid,
                                             "image_index": index, **extra}]}


def _denied(web: WebServer, actor: str) -> list[tuple[str, str]]:
    web.flush_audit()
    with sqlite3.connect(web.data_dir / "consilium.db") as conn:
        return [(r[0], r[1]) for r in conn.execute(
            "SELECT action, detail FROM audit_event WHERE actor = ? AND action = 'denied' "
            "ORDER BY id", (f"dev:{actor}",))]


def test_schedule_invite_join_and_the_state_every_participant_folds(world: World) -> None:
    petrov = world.participant("petrov")
    session = _session(world, ["dev:petrov"])
    sid = session["id"]
    assert session["status"] == "open" and session["chair"]["subject"] == "dev:ivanova"
    assert [m["subject"] for m in session["members"]] == ["dev:ivanova", "dev:petrov"]
    petrov.wait(lambda p: any(i["session_id"] == sid for i in p.invited))
    invitation = next(i for i in petrov.invited if i["session_id"] == sid)
    assert set(invitation) == {"session_id", "case_id", "status", "scheduled_at", "chair_name",
                               "chair_institution"}  # no patient data, no title
    inbox = world.users["petrov"].get("/api/consilia").json()["sessions"]
    assert sid in [s["id"] for s in inbox]

    chair = world.participant("ivanova")
    kuznetsova = world.participant("kuznetsova")
    try:
        for p in (chair, petrov, kuznetsova):
            answer = p.join(sid)
            assert answer["ok"], answer
        chair.wait(lambda p: p.state is not None and sum(
            m["online"] for m in p.state["members"].values()) == 3)
        assert chair.call("view:change", {"session_id": sid, "kind": "view.stack",
                                          "state": _stack(world, 5)})["ok"]
        said = petrov.call("chat:send", {"session_id": sid, "text": "Видно узел?"})
        assert said["ok"], said
        for p in (chair, petrov, kuznetsova):
            p.wait_seq(said["seq"])
            p.wait(lambda q: q.state is not None and q.state["view"]["stack"] is not None)
        states = [p.current() for p in (chair, petrov, kuznetsova)]
        assert states[0] == states[1] == states[2]
        assert states[0]["view"]["stack"]["viewports"][0]["image_index"] == 5
        assert [c["text"] for c in states[0]["chat"]] == ["Видно узел?"]
        record = world.users["ivanova"].get(f"/api/consilia/{sid}/changes").json()["changes"]
        assert replay(record, sid) == states[0]  # the record is the state
    finally:
        for p in (chair, petrov, kuznetsova):
            p.disconnect()


def _together(world: World, *names: str) -> tuple[str, list[Participant]]:
    """A fresh open session with ``names`` joined (the first is the chair, ivanova)."""
    session = _session(world, ["dev:petrov"])
    people = [world.participant(n) for n in names]
    for p in people:
        assert p.join(session["id"])["ok"]
    return session["id"], people


def test_concurrent_changes_from_three_clients_arrive_in_one_order(world: World) -> None:
    sid, people = _together(world, "ivanova", "petrov", "kuznetsova")
    chair, petrov, kuznetsova = people
    try:
        chair.wait(lambda p: p.state is not None and sum(
            m["online"] for m in p.state["members"].values()) == 3)
        start = max(p.current()["seq"] for p in people)
        errors: list[str] = []

        def talk(p: Participant, n: int) -> None:
            for i in range(n):
                answer = p.call("chat:send", {"session_id": sid, "text": f"{p.name} {i}"})
                if not answer["ok"]:
                    errors.append(str(answer))
                p.send("pointer:move", {"session_id": sid, "series_uid": world.series_uid,
                                        "x": float(i), "y": 1.0})

        def present(n: int) -> None:
            for i in range(n):
                chair.send("view:change", {"session_id": sid, "kind": "view.stack",
                                           "state": _stack(world, i % 24)})
                time.sleep(0.002)

        threads = [threading.Thread(target=talk, args=(p, 15)) for p in people]
        threads.append(threading.Thread(target=present, args=(200,)))
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors
        time.sleep(0.3)  # let the last coalesced changes go out
        final = world.users["ivanova"].get(f"/api/consilia/{sid}").json()["last_seq"]
        for p in people:
            p.wait_seq(final)
        seen = [[(c["seq"], c["kind"], c["actor"], json.dumps(c["payload"], sort_keys=True))
                 for c in p.changes if c["seq"] > start] for p in people]
        assert seen[0] == seen[1] == seen[2]  # the same changes, in the same order
        seqs = [s for s, *_ in seen[0]]
        assert seqs == list(range(start + 1, final + 1))  # in seq order, none missing
        chats = [c for c in seen[0] if c[1] == "chat.message"]
        assert len(chats) == 45
        for p in people:  # each one's messages in the order they were sent
            mine = [json.loads(c[3])["text"] for c in chats if c[2] == f"dev:{p.name}"]
            assert mine == [f"{p.name} {i}" for i in range(15)]
        assert chair.current() == petrov.current() == kuznetsova.current()
    finally:
        for p in people:
            p.disconnect()


def test_coalescing_keeps_the_final_state(world: World) -> None:
    sid, people = _together(world, "ivanova", "petrov")
    chair, petrov = people
    try:
        start = petrov.current()["seq"]
        for i in range(300):  # a fast scroll and window drag, not waiting for answers
            chair.send("view:change", {"session_id": sid, "kind": "view.stack", "state": _stack(
                world, i % 24, voi={"center": 40.0 + i, "width": 400.0})})
        last = chair.call("view:change", {"session_id": sid, "kind": "view.stack",
                                          "state": _stack(world, 7, voi={"center": 1000.0,
                                                                          "width": 50.0})})
        assert last["ok"]
        petrov.wait(lambda p: p.state is not None and p.state["view"]["stack"] is not None
                    and p.state["view"]["stack"]["viewports"][0]["voi"]["center"] == 1000.0)
        received = [c for c in petrov.changes if c["seq"] > start and c["kind"] == "view.stack"]
        assert 1 <= len(received) < 301  # coalesced: fewer messages, the final state whole
        assert petrov.current()["view"]["stack"] == {
            "layout": "1x1", "active": 0, "viewports": [{
                "study_uid": world.study_uid, "series_uid": world.series_uid, "image_index": 7,
                "frame": 0, "voi": {"center": 1000.0, "width": 50.0}, "zoom": 1.0,
                "pan": [0.0, 0.0], "rotation": 0.0, "flip_h": False, "flip_v": False,
                "invert": False}]}
        record = world.users["ivanova"].get(f"/api/consilia/{sid}/changes",
                                            params={"after": start}).json()["changes"]
        assert [c["seq"] for c in record if c["kind"] == "view.stack"] == [
            c["seq"] for c in received]  # recorded exactly as broadcast
    finally:
        for p in people:
            p.disconnect()


def test_only_the_presenter_changes_the_view_and_control_moves(world: World) -> None:
    sid, people = _together(world, "ivanova", "petrov", "kuznetsova")
    chair, petrov, kuznetsova = people
    try:
        refused = petrov.call("view:change", {"session_id": sid, "kind": "view.stack",
                                              "state": _stack(world, 1)})
        assert (refused["ok"], refused["status"]) == (False, 403)
        assert petrov.call("control:request", {"session_id": sid})["ok"]
        assert petrov.call("hand:raise", {"session_id": sid})["ok"]
        assert kuznetsova.call("control:grant", {"session_id": sid, "subject": "dev:petrov"}
                               )["status"] == 403
        granted = chair.call("control:grant", {"session_id": sid, "subject": "dev:petrov"})
        assert granted["ok"], granted
        petrov.wait_seq(granted["seq"])
        state = petrov.current()
        assert state["presenter"] == "dev:petrov" and state["control_requests"] == []
        assert state["members"]["dev:petrov"]["hand"] is True
        assert petrov.call("view:change", {"session_id": sid, "kind": "view.stack",
                                           "state": _stack(world, 3)})["ok"]
        assert chair.call("view:change", {"session_id": sid, "kind": "view.stack",
                                          "state": _stack(world, 4)})["status"] == 403
        bad = petrov.call("view:change", {"session_id": sid, "kind": "view.stack", "state": {
            "viewports": [{"study_uid": "1.2.3", "series_uid": "1.2.3.4"}]}})
        assert (bad["status"], bad["reason"]) == (400, "not-in-case")
        taken = chair.call("control:take", {"session_id": sid})
        assert taken["ok"]
        assert chair.call("hand:lower", {"session_id": sid, "subject": "dev:petrov"})["ok"]
        kuznetsova.wait(lambda p: p.state is not None and p.state["presenter"] == "dev:ivanova"
                        and not p.state["members"]["dev:petrov"]["hand"])
        assert kuznetsova.current()["view"]["stack"]["viewports"][0]["image_index"] == 3
    finally:
        for p in people:
            p.disconnect()


def test_a_late_joiner_and_a_reconnecting_participant_get_exactly_the_current_state(
        world: World) -> None:
    sid, people = _together(world, "ivanova", "petrov")
    chair, petrov = people
    late = world.participant("kuznetsova")
    try:
        for i in range(5):
            assert chair.call("chat:send", {"session_id": sid, "text": f"before {i}"})["ok"]
        chair.call("view:change", {"session_id": sid, "kind": "view.stack",
                                   "state": _stack(world, 9)})
        petrov.wait(lambda p: p.state is not None and p.state["view"]["stack"] is not None)
        gone_at = petrov.current()["seq"]
        petrov.disconnect()  # the line drops; what he applied stays with him
        for i in range(5):
            assert chair.call("chat:send", {"session_id": sid, "text": f"while away {i}"})["ok"]
        chair.call("view:change", {"session_id": sid, "kind": "view.stack",
                                   "state": _stack(world, 11)})
        answer = late.join(sid)  # a snapshot
        assert "snapshot" in answer and "changes" not in answer
        petrov.reconnect()
        back = petrov.join(sid, last_seq=gone_at)
        assert back["ok"] and "changes" in back and "snapshot" not in back
        assert [c["seq"] for c in back["changes"]] == list(range(gone_at + 1, back["seq"] + 1))
        final = chair.call("chat:send", {"session_id": sid, "text": "all here"})["seq"]
        for p in (chair, petrov, late):
            p.wait_seq(final)
        assert chair.current() == petrov.current() == late.current()
        assert [m["text"] for m in late.current()["chat"]][-2:] == ["while away 4", "all here"]
        assert late.current()["view"]["stack"]["viewports"][0]["image_index"] == 11
        online = late.current()["members"]["dev:petrov"]
        assert online["online"] and len(online["connections"]) == 1  # the old one has left
    finally:
        for p in (chair, petrov, late):
            p.disconnect()


def test_strangers_an_expired_invitation_and_another_institution_are_refused_and_audited(
        world: World) -> None:
    draft = world.post("ivanova", "/api/cases", {  # not sent: no institution is granted it
        "question": "До отправки", "study_uids": [world.private_study],
        "target_institution": "regional-center"})
    assert draft.status_code == 200, draft.text
    session = _session(world, case_id=draft.json()["id"])  # nobody invited
    sid = session["id"]
    orlov, petrov = world.participant("orlov"), world.participant("petrov")
    try:
        before = len(_denied(world.web, "orlov"))
        foreign = orlov.call("session:join", {"session_id": sid})
        missing = orlov.call("session:join", {"session_id": "x" * 20})
        assert foreign == missing == {"ok": False, "status": 404,
                                      "error": "no such consilium session here",
                                      "reason": "not-found"}
        rows = _denied(world.web, "orlov")[before:]
        assert len(rows) == 2
        details = [json.loads(d) for _, d in rows]
        assert [d["session"] for d in details] == [sid, "x" * 20]
        assert details[0]["event"] == "session:join"
        assert orlov.call("chat:send", {"session_id": sid, "text": "hi"})["status"] == 404
        http = world.users["orlov"].get(f"/api/consilia/{sid}")
        assert http.status_code == 404

        uninvited = petrov.call("session:join", {"session_id": sid})
        assert uninvited["status"] == 404  # his own hospital's case, but no party, not invited

        metadata = f"/dicom-web/studies/{world.private_study}/metadata"
        assert world.users["orlov"].get(metadata).status_code == 404
        assert world.post("ivanova", f"/api/consilia/{sid}/invite",
                          {"subjects": ["dev:orlov"]}).status_code == 200
        assert world.users["orlov"].get(metadata).status_code == 200  # the invitation's grant
        assert orlov.join(sid)["ok"]
        ended = world.post("ivanova", f"/api/consilia/{sid}/end")
        assert ended.status_code == 200 and ended.json()["status"] == "ended"
        orlov.wait(lambda p: any(c["session_id"] == sid for c in p.closed))
        orlov.reconnect()
        before = len(_denied(world.web, "orlov"))
        expired = orlov.call("session:join", {"session_id": sid})  # retention 0: expired
        assert expired == foreign
        assert len(_denied(world.web, "orlov")) == before + 1
        assert world.users["orlov"].get(metadata).status_code == 404  # the grant ended too
    finally:
        orlov.disconnect()
        petrov.disconnect()


def test_the_end_leaves_who_joined_presented_and_said_what_in_the_case_timeline(
        world: World) -> None:
    sid, people = _together(world, "ivanova", "petrov", "kuznetsova")
    chair, petrov, kuznetsova = people
    try:
        chair.call("view:change", {"session_id": sid, "kind": "view.stack",
                                   "state": _stack(world, 2)})
        assert chair.call("control:grant", {"session_id": sid, "subject": "dev:petrov"})["ok"]
        assert petrov.call("chat:send", {"session_id": sid, "text": "Узел 8 мм"})["ok"]
        assert kuznetsova.call("session:end", {"session_id": sid})["status"] == 403
        ended = chair.call("session:end", {"session_id": sid})
        assert ended["ok"], ended
        for p in people:
            p.wait(lambda q: any(c["session_id"] == sid for c in q.closed))
            assert p.current()["status"] == "ended"
        refused = chair.call("chat:send", {"session_id": sid, "text": "after"})
        assert refused["status"] == 409  # not in it any more: join first (read-only)
    finally:
        for p in people:
            p.disconnect()
    history = world.users["ivanova"].get(f"/api/cases/{world.case_id}/history").json()
    mine = [(e["actor"], json.loads(e["detail"])) for e in history
            if e["kind"] == "consilium" and json.loads(e["detail"])["session"] == sid]
    events = [(actor, d["event"]) for actor, d in mine]
    assert ("dev:ivanova", "scheduled") in events and ("dev:ivanova", "opened") in events
    joined = {actor for actor, event in events if event == "joined"}
    assert joined == {"dev:ivanova", "dev:petrov", "dev:kuznetsova"}
    presented = [(actor, d) for actor, d in mine if d["event"] == "presented"]
    assert [a for a, _ in presented] == ["dev:ivanova", "dev:petrov"]
    assert presented[0][1]["series"] == [world.series_uid]
    assert [d["text"] for _, d in mine if d["event"] == "chat"] == ["Узел 8 мм"]
    assert events[-1] == ("dev:ivanova", "ended")
    opened = [e for e in history if e["kind"] == "viewed" and e["channel"] == "socket"]
    assert opened  # the joins read the case's study through the gate: on the audit trail


def test_a_restart_keeps_what_was_persisted(world: World) -> None:
    sid, people = _together(world, "ivanova", "petrov")
    chair, petrov = people
    try:
        assert chair.call("chat:send", {"session_id": sid, "text": "before the restart"})["ok"]
        chair.call("view:change", {"session_id": sid, "kind": "view.stack",
                                   "state": _stack(world, 13)})
        petrov.wait(lambda p: p.state is not None and p.state["view"]["stack"] is not None)
        kept = petrov.current()
        world.web.stop()
        world.web.start()
        for p in people:
            p.reconnect()
        back = petrov.join(sid, last_seq=kept["seq"])
        assert back["ok"], back
        again = chair.join(sid, last_seq=chair.current()["seq"])
        assert again["ok"]
        final = chair.call("chat:send", {"session_id": sid, "text": "after"})["seq"]
        for p in people:
            p.wait_seq(final)
        state = petrov.current()
        assert state == chair.current()
        assert [m["text"] for m in state["chat"]] == ["before the restart", "after"]
        assert state["view"]["stack"] == kept["view"]["stack"]
        # the connections of the process that stopped were closed by the new one
        for subject in ("dev:ivanova", "dev:petrov"):
            assert len(state["members"][subject]["connections"]) == 1
        fresh = world.participant("kuznetsova")  # a snapshot made by the new process
        try:
            assert "snapshot" in fresh.join(sid)
            last = chair.call("chat:send", {"session_id": sid, "text": "welcome"})["seq"]
            for p in (*people, fresh):
                p.wait_seq(last)
            assert fresh.current() == chair.current() == petrov.current()
        finally:
            fresh.disconnect()
    finally:
        for p in people:
            p.disconnect()


def test_a_client_ahead_of_the_record_starts_afresh(world: World) -> None:
    """A client that applied changes the database no longer has (a power loss can take the
    last uncommitted-to-disk view changes) gets a snapshot, not an empty list."""
    sid, people = _together(world, "ivanova", "petrov")
    petrov = people[1]
    try:
        seq = petrov.current()["seq"]
        petrov.reconnect()
        answer = petrov.call("session:join", {"session_id": sid, "last_seq": seq + 1000})
        assert answer["ok"] and "snapshot" in answer and answer["seq"] >= seq
    finally:
        for p in people:
            p.disconnect()


def test_a_scheduled_session_is_waited_in_and_opened_by_its_chair(world: World) -> None:
    at = (datetime.now(UTC) + timedelta(hours=2)).isoformat()
    petrov = world.participant("petrov")
    session = _session(world, ["dev:petrov"], scheduled_at=at)
    sid = session["id"]
    assert session["status"] == "scheduled" and session["opened_at"] is None
    waiting = world.participant("kuznetsova")
    try:
        petrov.wait(lambda p: any(i["session_id"] == sid and i["status"] == "scheduled"
                                  for i in p.invited))
        assert "snapshot" in waiting.join(sid)  # a party waits in the scheduled session
        assert waiting.current()["status"] == "scheduled"
        early = waiting.call("chat:send", {"session_id": sid, "text": "hello?"})
        assert (early["status"], early["reason"]) == (409, "state")
        assert world.post("kuznetsova", f"/api/consilia/{sid}/start").status_code == 403
        started = world.post("ivanova", f"/api/consilia/{sid}/start")
        assert started.status_code == 200 and started.json()["status"] == "open"
        assert world.post("ivanova", f"/api/consilia/{sid}/start").status_code == 409
        waiting.wait(lambda p: p.state is not None and p.state["status"] == "open")
        assert waiting.current()["presenter"] == "dev:ivanova"
        petrov.wait(lambda p: any(i["session_id"] == sid and i["status"] == "open"
                                  for i in p.invited))  # told that it has begun
        mine = world.users["ivanova"].get(f"/api/cases/{world.case_id}/consilia").json()
        assert sid in [s["id"] for s in mine["sessions"]]
    finally:
        petrov.disconnect()
        waiting.disconnect()
