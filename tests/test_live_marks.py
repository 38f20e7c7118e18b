"""Marks in a live consilium: a real ``consilium serve`` and python-socketio participants.

Three clients drawing, moving and deleting marks at once end with the same set, which is also
the set the case keeps (HTTP); a mark's last change in the session's order is the one kept; a
latecomer and a restarted server give all of them back; only the author changes a mark. The
world (ivanova's CT case for the regional center, petrov invited) is that of
``test_live_session``.
"""

from __future__ import annotations

import threading
from typing import Any

from tests.live_client import Participant
from tests.test_live_session import World, _session, _together, world
from tests.webserver import csrf_of

__all__ = ["world"]


def _image(world: World) -> dict[str, Any]:
    with_sop = world.users["ivanova"].get(
        f"/dicom-web/studies/{world.study_uid}/series/{world.series_uid}/instances",
        headers={"Accept": "application/dicom+json"}).json()
    sop = sorted(i["00080018"]["Value"][0] for i in with_sop)[3]
    return {"study_uid": world.study_uid, "series_uid": world.series_uid,
            "sop_instance_uid": sop}


def _length(world: World, image: dict[str, Any], mark_id: str, x: float) -> dict[str, Any]:
    return {"id": mark_id, "kind": "length", "image": image,
            "points": [[x, 10.0], [x + 20.0, 30.0]], "measured": {"length_mm": 28.3}}


def _case_marks(world: World, who: str = "ivanova") -> dict[str, list[list[float]]]:
    answer = world.users[who].get(f"/api/cases/{world.case_id}/marks")
    assert answer.status_code == 200, answer.text
    return {m["id"]: m["points"] for m in answer.json()["marks"]}


def _state_marks(p: Participant) -> dict[str, list[list[float]]]:
    return {m["id"]: m["points"] for m in p.current()["annotations"]}


def _settle(world: World, sid: str, people: list[Participant]) -> int:
    final = int(world.users["ivanova"].get(f"/api/consilia/{sid}").json()["last_seq"])
    for p in people:
        p.wait_seq(final)
    return final


def test_three_clients_editing_at_once_converge_on_the_case_s_marks(world: World) -> None:
    image = _image(world)
    before = _case_marks(world)
    sid, people = _together(world, "ivanova", "petrov", "kuznetsova")
    second = world.participant("ivanova")  # the chair's second tab: the same author
    assert second.join(sid)["ok"]
    everyone = [*people, second]
    errors: list[str] = []
    refused: list[dict[str, Any]] = []

    def draw(p: Participant, tag: str) -> None:
        for i in range(8):
            mark = _length(world, image, f"{tag}-{i}", float(i))
            p.send("mark:drawing", {"session_id": sid, "mark": {**mark, "points": [[0, 0],
                                                                                   [i, i]]}})
            answer = p.call("mark:put", {"session_id": sid, "mark": mark})
            if not answer["ok"]:
                errors.append(f"{tag} put {i}: {answer}")
            if i % 3 == 1:  # moved again
                moved = p.call("mark:put", {"session_id": sid,
                                            "mark": _length(world, image, f"{tag}-{i}", 99.0)})
                if not moved["ok"]:
                    errors.append(f"{tag} move {i}: {moved}")
            if i % 4 == 3:
                gone = p.call("mark:delete", {"session_id": sid, "id": f"{tag}-{i}"})
                if not gone["ok"]:
                    errors.append(f"{tag} delete {i}: {gone}")
            # someone else's mark: refused, whatever the timing
            other = {"ivanova": "petrov", "petrov": "kuznetsova", "kuznetsova": "ivanova"}
            answer = p.call("mark:put", {"session_id": sid, "mark": _length(
                world, image, f"{other[p.name]}-0", 50.0)})
            if answer["ok"]:
                errors.append(f"{tag} wrote {other[p.name]}-0")
            else:
                refused.append(answer)

    def contend(p: Participant, n: int) -> None:
        """Two connections of one author move the same mark: the last in seq order wins."""
        for i in range(n):
            answer = p.call("mark:put", {"session_id": sid, "mark": _length(
                world, image, "shared", float(i if p is second else 200 + i))})
            if not answer["ok"]:
                errors.append(f"shared {i}: {answer}")

    try:
        threads = [threading.Thread(target=draw, args=(p, p.name)) for p in people]
        threads += [threading.Thread(target=contend, args=(p, 10)) for p in (people[0], second)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors
        assert refused and all(r["status"] in (403, 404) for r in refused)
        assert {r["reason"] for r in refused if r["status"] == 403} == {"not-yours"}
        _settle(world, sid, everyone)
        states = [p.current() for p in everyone]
        assert all(s == states[0] for s in states[1:])  # one state, folded by each client
        assert states[0]["drawing"] == {}  # every stroke ended with its mark
        expected = {f"{n}-{i}" for n in ("ivanova", "petrov", "kuznetsova") for i in range(8)
                    if i % 4 != 3} | {"shared"} | set(before)
        marks = _state_marks(people[1])
        assert set(marks) == expected
        assert all(marks[f"{n}-1"] == [[99.0, 10.0], [119.0, 30.0]]
                   for n in ("ivanova", "petrov", "kuznetsova"))
        # the case keeps exactly what the session shows (read by an invitee and a party)
        assert _case_marks(world, "petrov") == marks == _case_marks(world, "kuznetsova")
        # the last mark.put of "shared" in the session's order is the one kept
        last_shared = [c for c in people[1].changes
                       if c["kind"] == "mark.put" and c["payload"]["mark"]["id"] == "shared"][-1]
        assert marks["shared"] == last_shared["payload"]["mark"]["points"]
        authors = {m["id"]: (m["author_subject"], m["color"])
                   for m in states[0]["annotations"]}
        assert authors["petrov-0"][0] == "dev:petrov"
        assert len({authors[f"{n}-0"][1] for n in ("ivanova", "petrov", "kuznetsova")}) >= 2
        # a latecomer's snapshot holds them all
        late = world.participant("morozov")
        try:
            assert "snapshot" in late.join(sid)
            assert _state_marks(late) == marks
        finally:
            late.disconnect()
    finally:
        for p in everyone:
            p.disconnect()


def test_a_session_starts_with_the_case_s_marks_and_refuses_what_is_not_the_case_s(
        world: World) -> None:
    image = _image(world)
    client = world.users["kuznetsova"]
    drawn = client.put(f"/api/cases/{world.case_id}/marks/before-session",
                       json=_length(world, image, "before-session", 5.0),
                       headers={"X-CSRF-Token": csrf_of(client)})
    assert drawn.status_code == 200, drawn.text
    session = _session(world, ["dev:petrov"])
    petrov = world.participant("petrov")
    try:
        assert petrov.join(session["id"])["ok"]
        assert _state_marks(petrov)["before-session"] == [[5.0, 10.0], [25.0, 30.0]]
        sid = session["id"]
        foreign = {**_length(world, image, "p-x", 1.0),
                   "image": {**image, "series_uid": "1.2.3.4"}}
        answer = petrov.call("mark:put", {"session_id": sid, "mark": foreign})
        assert (answer["status"], answer["reason"]) == (400, "not-in-case")
        answer = petrov.call("mark:put", {"session_id": sid, "mark": {
            **_length(world, image, "p-y", 1.0), "points": [[1.0, 2.0]]}})
        assert answer["status"] == 400 and "needs 2 points" in answer["error"]
        answer = petrov.call("mark:delete", {"session_id": sid, "id": "before-session"})
        assert (answer["status"], answer["reason"]) == (403, "not-yours")
        answer = petrov.call("mark:drawing", {"session_id": sid, "mark": {
            **_length(world, image, "p-z", 1.0), "points": [[float("nan"), 1.0], [2.0, 2.0]]}})
        assert answer["status"] == 400
        assert world.post("ivanova", f"/api/consilia/{sid}/end").status_code == 200
        answer = petrov.call("mark:put", {"session_id": sid,
                                          "mark": _length(world, image, "p-late", 1.0)})
        assert answer["ok"] is False and answer["status"] in (404, 409)
        assert "p-late" not in _case_marks(world)
    finally:
        petrov.disconnect()


def test_a_restart_keeps_the_marks(world: World) -> None:
    image = _image(world)
    sid, people = _together(world, "ivanova", "petrov")
    chair, petrov = people
    try:
        for i in range(3):
            assert petrov.call("mark:put", {"session_id": sid, "mark": _length(
                world, image, f"restart-{i}", float(i))})["ok"]
        petrov.send("mark:drawing", {"session_id": sid,
                                     "mark": _length(world, image, "restart-9", 9.0)})
        _settle(world, sid, people)
        petrov.wait(lambda p: "dev:petrov" in (p.state or {}).get("drawing", {}))
        kept = petrov.current()
        world.web.stop()
        world.web.start()
        for p in people:
            p.reconnect()
        assert petrov.join(sid, last_seq=kept["seq"])["ok"]
        assert chair.join(sid, last_seq=chair.current()["seq"])["ok"]
        final = chair.call("chat:send", {"session_id": sid, "text": "after"})["seq"]
        for p in people:
            p.wait_seq(final)
        assert _state_marks(petrov) == _state_marks(chair) == {
            m["id"]: m["points"] for m in kept["annotations"]}
        assert {f"restart-{i}" for i in range(3)} <= set(_state_marks(petrov))
        assert _case_marks(world) == _state_marks(petrov)
        fresh = world.participant("kuznetsova")
        try:
            assert "snapshot" in fresh.join(sid)
            assert _state_marks(fresh) == _state_marks(chair)
        finally:
            fresh.disconnect()
        assert petrov.current()["annotations"] == chair.current()["annotations"]
    finally:
        for p in people:
            p.disconnect()
