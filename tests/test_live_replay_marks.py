"""Replay shows what was drawn: a finished consilium's timeline has the ``mark.put`` and
``mark.deleted`` changes with who made them and which mark (kind, what it measured), not the
strokes in progress; the state at every seq (``/replay/state``) holds exactly the marks present
then, as the participants had them. A real ``consilium serve`` and python-socketio participants
(the world of ``test_live_session``)."""

from __future__ import annotations

from typing import Any

from tests.test_live_marks import _image, _length, _settle
from tests.test_live_protocol import Recorder
from tests.test_live_session import World, _session, world

__all__ = ["world"]


def _ellipse(image: dict[str, Any], mark_id: str, x: float) -> dict[str, Any]:
    return {"id": mark_id, "kind": "ellipse", "image": image,
            "points": [[x, 10.0], [x + 20.0, 10.0], [x + 10.0, 5.0], [x + 10.0, 15.0]],
            "measured": {"area_mm2": 157.1, "mean": 42.5, "stdev": 7.25, "unit": "HU"}}


def test_the_timeline_and_the_states_show_what_was_drawn_by_whom(world: World) -> None:
    image = _image(world)
    sid = _session(world, ["dev:petrov"])["id"]
    chair = Recorder(world.web.url, world.users["ivanova"], "ivanova")
    petrov = Recorder(world.web.url, world.users["petrov"], "petrov")
    people = [chair, petrov]
    try:
        for p in people:
            assert p.join(sid)["ok"]
        a = _length(world, image, "replay-a", 5.0)
        assert chair.call("mark:put", {"session_id": sid, "mark": a})["ok"]
        _settle(world, sid, people)
        b = _ellipse(image, "replay-b", 30.0)
        for i in range(1, 4):  # the stroke in progress
            grown = {**b, "points": [[30.0, 10.0], [30.0 + 5 * i, 10.0]]}
            petrov.send("mark:drawing", {"session_id": sid, "mark": grown})
            _settle(world, sid, people)
        assert petrov.call("mark:put", {"session_id": sid, "mark": b})["ok"]
        _settle(world, sid, people)
        assert chair.call("mark:delete", {"session_id": sid, "id": "replay-a"})["ok"]
        moved = _ellipse(image, "replay-b", 60.0)
        assert petrov.call("mark:put", {"session_id": sid, "mark": moved})["ok"]
        _settle(world, sid, people)
        assert chair.call("session:end", {"session_id": sid})["ok"]
        last = _settle(world, sid, people)
    finally:
        for p in people:
            p.disconnect()

    reader = world.users["kuznetsova"]  # a party of the case (the invitee was only a guest)
    replay = reader.get(f"/api/consilia/{sid}/replay").json()
    assert replay["last_seq"] == last
    names = reader.get(f"/api/consilia/{sid}/replay/state",
                       params={"seq": last}).json()["state"]["members"]
    drawn = [e for e in replay["timeline"] if e["kind"].startswith("mark.")]
    assert [(e["kind"], e["actor"], e["name"], e["what"]["mark_id"], e["what"]["mark_kind"])
            for e in drawn] == [
        ("mark.put", "dev:ivanova", names["dev:ivanova"]["name"], "replay-a", "length"),
        ("mark.put", "dev:petrov", names["dev:petrov"]["name"], "replay-b", "ellipse"),
        ("mark.deleted", "dev:ivanova", names["dev:ivanova"]["name"], "replay-a", "length"),
        ("mark.put", "dev:petrov", names["dev:petrov"]["name"], "replay-b", "ellipse"),
    ]
    assert all(e["name"] for e in drawn)
    assert drawn[1]["what"]["measured"] == {"area_mm2": 157.1, "mean": 42.5, "stdev": 7.25,
                                            "unit": "HU"}
    assert drawn[0]["what"]["series_uid"] == world.series_uid
    record = reader.get(f"/api/consilia/{sid}/changes").json()["changes"]
    assert any(c["kind"] == "mark.drawing" for c in record)  # recorded, but no step

    # the marks present before and after each step, as the server folds them
    def marks_at(seq: int) -> dict[str, list[list[float]]]:
        answer = reader.get(f"/api/consilia/{sid}/replay/state", params={"seq": seq})
        assert answer.status_code == 200, answer.text
        return {m["id"]: m["points"] for m in answer.json()["state"]["annotations"]}

    expected_after = [{"replay-a": a["points"]},
                      {"replay-a": a["points"], "replay-b": b["points"]},
                      {"replay-b": b["points"]},
                      {"replay-b": moved["points"]}]
    before: dict[str, list[list[float]]] = {}
    for step, after in zip(drawn, expected_after, strict=True):
        assert marks_at(step["seq"] - 1) == before, step
        assert marks_at(step["seq"]) == after, step
        before = after
    # the stroke in progress is in the state while it was drawn, gone with its mark.put
    drawing_seqs = [c["seq"] for c in record if c["kind"] == "mark.drawing"]
    during = reader.get(f"/api/consilia/{sid}/replay/state",
                        params={"seq": drawing_seqs[-1]}).json()["state"]
    assert during["drawing"]["dev:petrov"]["id"] == "replay-b"
    assert "dev:petrov" not in reader.get(f"/api/consilia/{sid}/replay/state", params={
        "seq": drawn[1]["seq"]}).json()["state"]["drawing"]
    # and each is what the participants had after applying that change
    lived = {seq: state for p in people for seq, state in p.lived.items()}
    for step in drawn:
        if step["seq"] in lived:
            assert reader.get(f"/api/consilia/{sid}/replay/state", params={
                "seq": step["seq"]}).json()["state"] == lived[step["seq"]]
    assert sum(step["seq"] in lived for step in drawn) >= 3
