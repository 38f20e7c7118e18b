"""A session's shared render streams end to end: a real ``consilium serve`` with its render
worker, the presenter's view rendered once and the same frames to three followers, each with its
own acknowledgement window; the session's volume prepared when it opens."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import socketio
from pydicom import dcmread

from consilium.synthetic import PatientSpec, StudySpec, write_ct_series
from tests.conftest import CONFIG, CONSILIUM
from tests.live_client import Participant
from tests.webserver import WebServer, csrf_of

STUDY = StudySpec(PatientSpec("LIVE-R01", "Render^Shared"), "20261203", accession="LR1")
CAMERA = ("position", "focal_point", "view_up", "view_angle", "preset")
PLANE = ("origin", "x_axis", "y_axis", "normal", "spacing", "size", "window", "slab")


@dataclass
class World:
    web: WebServer
    study_uid: str
    series_uid: str
    session_id: str
    users: dict[str, httpx.Client]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("live-render")
    paths = write_ct_series(STUDY, root / "ct", slices=48, rows=128, columns=128,
                            uid_seed="live-render")
    first = dcmread(paths[0], stop_before_pixels=True)
    data_dir = root / "var"
    subprocess.run([str(CONSILIUM), "import", "--config", str(CONFIG), "--data-dir",
                    str(data_dir), "--institution", "city-hospital", "--quiet",
                    str(root / "ct")], check=True, capture_output=True)
    web = WebServer(data_dir, extra_env={
        "CONSILIUM_IDENTITY_LOGIN_ATTEMPTS_PER_MINUTE": "1000"}).start()
    try:
        users = {n: web.login(n) for n in ("ivanova", "petrov", "kuznetsova", "morozov")}

        def post(who: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
            answer = users[who].post(path, json=body,
                                     headers={"X-CSRF-Token": csrf_of(users[who])})
            assert answer.status_code == 200, answer.text
            return dict(answer.json())

        case = post("ivanova", "/api/cases", {
            "question": "3D?", "study_uids": [str(first.StudyInstanceUID)],
            "target_institution": "regional-center"})
        post("ivanova", f"/api/cases/{case['id']}/submit", {})
        session = post("ivanova", f"/api/cases/{case['id']}/consilia",
                       {"invitees": ["dev:petrov"]})
        deadline = time.monotonic() + 60
        while "prepared for rendering" not in web.log:  # opened: its volume is being prepared
            assert time.monotonic() < deadline, web.log[-2000:]
            time.sleep(0.2)
        yield World(web, str(first.StudyInstanceUID), str(first.SeriesInstanceUID),
                    session["id"], users)
    finally:
        web.stop()


def _volume(world: World, **camera: Any) -> dict[str, Any]:
    return {"study_uid": world.study_uid, "series_uid": world.series_uid, "preset": "ct-bone",
            "size": [256, 256], **camera}


def _frames(p: Participant, view: str, seq: int, quality: str = "final") -> list[dict[str, Any]]:
    return [f for f in p.frames if f["view"] == view and f["seq"] == seq
            and f["quality"] == quality]


def _own_frame(world: World, kind: str, params: dict[str, Any]) -> dict[str, Any]:
    """The same view through a connection's own render stream (render:subscribe)."""
    got: list[dict[str, Any]] = []
    done = threading.Event()
    client = socketio.Client(reconnection=False)

    @client.on("render:frame")  # type: ignore[untyped-decorator]
    def frame(data: dict[str, Any]) -> None:
        if data["quality"] == "final":
            got.append(data)
            done.set()

    client.connect(world.web.url, transports=["websocket"], wait_timeout=10, headers={
        "Cookie": f"consilium_session={world.users['kuznetsova'].cookies['consilium_session']}"})
    try:
        answer = client.call("render:subscribe", {"view": "own", "series_uid": world.series_uid,
                                                  "kind": kind, "params": params}, timeout=60)
        assert answer["ok"], answer
        assert done.wait(60)
    finally:
        client.disconnect()
    return got[0]


def test_the_presenters_view_reaches_three_followers_as_the_same_frames(world: World) -> None:
    sid = world.session_id
    presenter = Participant(world.web.url, world.users["ivanova"], "ivanova")
    followers = [Participant(world.web.url, world.users[n], n)
                 for n in ("petrov", "kuznetsova", "morozov")]
    people = [presenter, *followers]
    try:
        for p in people:
            assert p.join(sid)["ok"]
            assert p.call("session:render_follow", {"session_id": sid,
                                                    "views": ["3d", "mpr:axial"]})["ok"]
        camera = {"azimuth": 30.0, "elevation": 10.0, "zoom": 1.2}
        sent = time.monotonic()
        assert presenter.call("view:change", {"session_id": sid, "kind": "view.volume",
                                              "state": _volume(world, **camera),
                                              "final": True})["ok"]
        presenter.wait(lambda p: p.state is not None and p.state["view"]["volume"] is not None)
        seq = presenter.current()["seq"]
        for p in followers:
            p.wait(lambda q: bool(_frames(q, "3d", seq)), timeout=30)
        first = [_frames(p, "3d", seq)[0] for p in followers]
        assert first[0]["build_ms"] is None  # the volume was ready when the session asked
        assert max(f["received"] for f in first) - sent < 1.0  # within a second, warm
        assert first[0]["image"] == first[1]["image"] == first[2]["image"]  # rendered once
        assert first[0]["geometry"] == first[1]["geometry"] == first[2]["geometry"]
        own = _own_frame(world, "volume", {"preset": "ct-bone", "size": [256, 256], **camera})
        assert {k: first[0]["geometry"][k] for k in CAMERA} == {
            k: own["geometry"][k] for k in CAMERA}  # the presenter's camera, exactly

        mpr = {"study_uid": world.study_uid, "series_uid": world.series_uid,
               "point": [0.0, 0.0, -20.0], "window": [300.0, 1500.0], "slab": 10.0,
               "mode": "mip", "panes": {"axial": {"orientation": "axial", "size": 128}}}
        assert presenter.call("view:change", {"session_id": sid, "kind": "view.mpr",
                                              "state": mpr, "final": True})["ok"]
        presenter.wait(lambda p: p.state is not None and p.state["view"]["mpr"] is not None)
        seq = presenter.current()["seq"]
        for p in followers:
            p.wait(lambda q: bool(_frames(q, "mpr:axial", seq)), timeout=30)
        planes = [_frames(p, "mpr:axial", seq)[0]["geometry"] for p in followers]
        own = _own_frame(world, "mpr", {"orientation": "axial", "point": [0.0, 0.0, -20.0],
                                        "window": [300.0, 1500.0], "slab": 10.0, "mode": "mip",
                                        "size": 128})
        assert planes[0] == planes[1] == planes[2]
        assert {k: planes[0][k] for k in PLANE} == {k: own["geometry"][k] for k in PLANE}
    finally:
        for p in people:
            p.disconnect()


def test_a_slow_follower_gets_fewer_newer_frames_and_never_a_backlog(world: World) -> None:
    sid = world.session_id
    presenter = Participant(world.web.url, world.users["ivanova"], "ivanova")
    fast = Participant(world.web.url, world.users["petrov"], "petrov")
    slow = Participant(world.web.url, world.users["kuznetsova"], "kuznetsova",
                       on_frame=lambda _f: time.sleep(0.6) is None)  # acknowledges late
    people = [presenter, fast, slow]
    try:
        for p in people:
            assert p.join(sid)["ok"]
        for p in (fast, slow):
            assert p.call("session:render_follow", {"session_id": sid, "views": ["3d"]})["ok"]
        started = time.monotonic()
        for step in range(40):  # an orbit at 20 changes a second
            presenter.send("view:change", {"session_id": sid, "kind": "view.volume",
                                           "state": _volume(world, azimuth=float(step * 9))})
            time.sleep(0.05)
        last = presenter.call("view:change", {"session_id": sid, "kind": "view.volume",
                                              "state": _volume(world, azimuth=360.0),
                                              "final": True})
        assert last["ok"]
        orbit = time.monotonic() - started
        presenter.wait(lambda p: p.state is not None
                       and p.state["view"]["volume"]["azimuth"] == 360.0)
        seq = presenter.current()["seq"]
        fast.wait(lambda q: bool(_frames(q, "3d", seq)), timeout=30)
        slow.wait(lambda q: bool(_frames(q, "3d", seq)), timeout=30)
        fast_final = _frames(fast, "3d", seq)[0]["received"]
        slow_final = _frames(slow, "3d", seq)[0]["received"]
        assert slow_final - fast_final < 2.0  # the newest frame, not the end of a queue
        slow_frames = [f for f in slow.frames if f["received"] >= started]
        fast_frames = [f for f in fast.frames if f["received"] >= started]
        assert len(slow_frames) < len(fast_frames)
        assert len(slow_frames) <= 2 * (orbit + 2.0) / 0.6 + 2  # its window: 2 per ack
        seqs = [f["seq"] for f in slow_frames]
        assert seqs == sorted(seqs)  # newer and newer, nothing stale re-sent
    finally:
        for p in people:
            p.disconnect()


def test_followers_get_the_sharp_frame_once_the_presenter_stops(world: World) -> None:
    """An orbit without ``final``: interactive frames while it moves, then the full-quality
    frame of the last change reaches every follower (it has the same seq as the last
    interactive frame they were sent)."""
    sid = world.session_id
    presenter = Participant(world.web.url, world.users["ivanova"], "ivanova")
    followers = [Participant(world.web.url, world.users[n], n) for n in ("petrov", "morozov")]
    people = [presenter, *followers]
    try:
        for p in people:
            assert p.join(sid)["ok"]
        for p in followers:
            assert p.call("session:render_follow", {"session_id": sid, "views": ["3d"]})["ok"]
        started = time.monotonic()
        for step in range(20):
            presenter.send("view:change", {"session_id": sid, "kind": "view.volume",
                                           "state": _volume(world, azimuth=100.0 + step * 5)})
            time.sleep(0.05)
        presenter.wait(lambda p: p.state is not None
                       and p.state["view"]["volume"]["azimuth"] == 195.0)
        seq = presenter.current()["seq"]
        for p in followers:
            p.wait(lambda q: bool(_frames(q, "3d", seq)), timeout=30)
            moving = [f for f in p.frames if f["received"] >= started
                      and f["quality"] == "interactive"]
            assert moving  # it saw the orbit
            sharp = _frames(p, "3d", seq)[0]
            assert (sharp["width"], sharp["height"]) == (256, 256)
            assert sharp["received"] > max(f["received"] for f in moving)
    finally:
        for p in people:
            p.disconnect()
