"""Preparing a series for MPR / 3-D before the layout asks (``POST .../prepare``): the render
worker builds the volume, its reslicer and the coarse 3-D preview's state as background work,
and the layout's first frames then need no build (read from the worker's own account:
``Server-Timing`` without ``build``, ``build_ms`` null in the stream's frames, one build in its
log). Through the gate like a frame: another institution's series answers as a missing one and
leaves the same denied row, anonymous callers get 401, a browser's write without its CSRF token
403. Bounded: one preparation per series at a time, two per user. End to end with a real
``consilium serve``; the bounds with a real render worker in process."""

from __future__ import annotations

import asyncio
import re
import sqlite3
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import socketio
from pydicom import dcmread

from consilium.render.bridge import RenderBridge
from consilium.render.prepare import MAX_PER_USER, Preparations
from consilium.render.protocol import SeriesSource
from consilium.render.volume_cache import PREVIEW_MIN_VOXELS
from consilium.synthetic import PatientSpec, StudySpec, write_ct_series
from tests.conftest import CONFIG, CONSILIUM
from tests.test_render_service import api
from tests.webserver import WebServer

STUDY = StudySpec(PatientSpec("RPP-001", "Prepare^Large"), "20261203", accession="RPP1")
SIZE, SLICES = 256, 128  # 8.4 M voxels: over PREVIEW_MIN_VOXELS, so it has a coarse copy
MISSING = "1.2.826.0.1.3680043.8.498.1234567890"


@dataclass
class Data:
    large: list[Path]
    small: list[list[Path]]
    single: list[Path]


def uid(paths: list[Path]) -> str:
    return str(dcmread(paths[0], stop_before_pixels=True).SeriesInstanceUID)


def study_of(paths: list[Path]) -> str:
    return str(dcmread(paths[0], stop_before_pixels=True).StudyInstanceUID)


def source(paths: list[Path]) -> SeriesSource:
    return SeriesSource(uid(paths), study_of(paths), tuple(str(p) for p in paths),
                        SeriesSource.digest([str(p) for p in paths]))


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Data:
    assert SIZE * SIZE * SLICES >= PREVIEW_MIN_VOXELS
    root = tmp_path_factory.mktemp("prepare-data")
    large = write_ct_series(STUDY, root / "large", slices=SLICES, rows=SIZE, columns=SIZE,
                            uid_seed="rpp-large")
    small = [write_ct_series(StudySpec(PatientSpec(f"RPP-S{n}", "Prepare^Small"), "20261203"),
                             root / f"small{n}", slices=12, rows=64, columns=64,
                             uid_seed=f"rpp-small-{n}") for n in range(3)]
    single = write_ct_series(StudySpec(PatientSpec("RPP-1", "Prepare^One"), "20261203"),
                             root / "single", slices=1, rows=64, columns=64, uid_seed="rpp-one")
    return Data(large, small, single)


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory, data: Data) -> Iterator[WebServer]:
    data_dir = tmp_path_factory.mktemp("prepare") / "var"
    subprocess.run([str(CONSILIUM), "import", "--config", str(CONFIG), "--data-dir",
                    str(data_dir), "--institution", "city-hospital", "--quiet",
                    str(data.large[0].parent), str(data.single[0].parent)],
                   check=True, capture_output=True)
    server = WebServer(data_dir, extra_env={
        "CONSILIUM_IDENTITY_LOGIN_ATTEMPTS_PER_MINUTE": "1000"}).start()
    yield server
    server.stop()


def prepare(client: httpx.Client, series: str, **params: str) -> httpx.Response:
    return client.post(f"/api/render/series/{series}/prepare", params=params, timeout=120)


def builds(web: WebServer, series: str) -> int:
    """Volumes of ``series`` the render worker built, by its own log."""
    return len(re.findall(rf"built series {re.escape(series)} ", web.log))


def audit_rows(web: WebServer, actor: str) -> list[tuple[str, str, str, str]]:
    web.flush_audit()
    with sqlite3.connect(web.data_dir / "consilium.db") as conn:
        return conn.execute("SELECT action, outcome, study_uid, detail FROM audit_event "
                            "WHERE actor = ? ORDER BY id", (actor,)).fetchall()


def first_3d_frame(web: WebServer, series: str) -> dict[str, Any]:
    cookie = web.login("petrov").cookies["consilium_session"]
    client = socketio.Client(reconnection=False)
    client.connect(web.url, transports=["websocket"],
                   headers={"Cookie": f"consilium_session={cookie}"}, wait_timeout=10)
    frames: list[dict[str, Any]] = []
    got = threading.Event()

    @client.on("render:frame")  # type: ignore[untyped-decorator]
    def on_frame(frame: dict[str, Any]) -> bool:
        frames.append(frame)
        got.set()
        return True

    try:
        ack = client.call("render:subscribe", {"view": "3d", "series_uid": series,
                                               "kind": "volume", "params": {"size": 128}},
                          timeout=60)
        assert ack["ok"] is True, ack
        assert got.wait(60)
    finally:
        client.disconnect()
    return frames[0]


def test_a_prepared_series_first_frames_need_no_build(web: WebServer, data: Data) -> None:
    series = uid(data.large)
    owner = api(web, subject="prepare-owner")
    assert builds(web, series) == 0
    ready = prepare(owner, series, wait="1")
    assert ready.status_code == 200, ready.text
    answer = ready.json()
    assert answer["series_uid"] == series and answer["state"] == "ready"
    assert answer["build_ms"] is not None and answer["build_ms"] > 0  # this one built it
    assert answer["preview"] is True  # the coarse copy's ray caster is there
    assert ready.headers["cache-control"] == "no-store"
    assert builds(web, series) == 1
    assert f"series {series} prepared for rendering (preview)" in web.log
    # the layout's requests find the volume built: the worker reports no build for them
    info = owner.get(f"/api/render/series/{series}/info")
    assert info.status_code == 200 and "build;" not in info.headers["server-timing"]
    for orientation in ("axial", "coronal", "sagittal"):
        frame = owner.get(f"/api/render/series/{series}/mpr",
                          params={"orientation": orientation, "size": 256})
        assert frame.status_code == 200, frame.text
        assert "build;" not in frame.headers["server-timing"], frame.headers["server-timing"]
    streamed = first_3d_frame(web, series)
    assert streamed["preview"] is True and streamed["build_ms"] is None
    assert builds(web, series) == 1
    # asked again: nothing to build; without wait, answered at once
    again = prepare(owner, series, wait="1")
    assert again.status_code == 200 and again.json()["build_ms"] is None
    queued = prepare(owner, series)
    assert queued.status_code == 202, queued.text
    assert queued.json() == {"series_uid": series, "state": "queued", "seconds": None,
                             "build_ms": None, "preview": None}
    # read through the gate and recorded as a view of the study
    rows = audit_rows(web, "dev:prepare-owner")
    assert rows and rows[0][:3] == ("view", "success", study_of(data.large))
    assert '"prepare MPR/3D"' in rows[0][3]


def test_prepare_is_refused_like_any_read_of_the_series(web: WebServer, data: Data) -> None:
    series = uid(data.large)
    foreign = api(web, "regional-center", "prepare-foreign")
    refused, missing = prepare(foreign, series), prepare(foreign, MISSING)
    assert refused.status_code == missing.status_code == 404
    assert refused.content == missing.content
    assert refused.json()["error"] == "no such series here"
    rows = audit_rows(web, "dev:prepare-foreign")
    assert [(a, o, s) for a, o, s, _ in rows] == [("denied", "denied", "")] * 2
    assert rows[0][3].replace(series, MISSING) == rows[1][3]
    anonymous = web.client().post(f"/api/render/series/{series}/prepare")
    assert anonymous.status_code == 401
    browser = web.login("petrov")  # a session cookie: its writes carry the CSRF token
    assert browser.post(f"/api/render/series/{series}/prepare").status_code == 403
    owner = api(web, subject="prepare-owner-2")
    assert prepare(owner, series, wait="maybe").status_code == 400


def test_a_series_the_library_refuses_is_not_prepared(web: WebServer, data: Data) -> None:
    owner = api(web, subject="prepare-owner-3")
    series = uid(data.single)
    assert prepare(owner, series).status_code == 202  # the viewer does not wait
    refused = prepare(owner, series, wait="1")
    assert refused.status_code == 422
    assert refused.json()["reason"] == "single-slice"


def test_one_preparation_per_series_and_two_per_user(data: Data) -> None:
    async def scenario(bridge: RenderBridge) -> None:
        preparations = Preparations(bridge)
        a, b, c = (source(paths) for paths in data.small)
        first = preparations.start("dev:one", a)
        assert first[0] == "queued" and first[1] is not None
        # the same series again, by the same user or another: joined, nothing new queued
        assert preparations.start("dev:one", a) == ("running", first[1])
        assert preparations.start("dev:two", a) == ("running", first[1])
        second = preparations.start("dev:one", b)
        assert second[0] == "queued"
        assert MAX_PER_USER == 2
        assert preparations.start("dev:one", c) == ("skipped", None)
        third = preparations.start("dev:two", c)  # another user's bound is their own
        assert third[0] == "queued"
        assert preparations.running() == 3
        done = await asyncio.gather(*(t for _, t in (first, second, third) if t is not None))
        assert [w.ok for w in done] == [True, True, True]
        assert all(w.build_ms is not None and not w.preview for w in done)  # small: no copy
        assert preparations.running() == 0
        again = preparations.start("dev:one", c)  # the bound is of running preparations
        assert again[0] == "queued" and again[1] is not None
        warmed = await again[1]
        assert warmed.ok and warmed.build_ms is None  # built by dev:two's

    bridge = RenderBridge(workers=1, cache_mb=256)
    try:
        asyncio.run(scenario(bridge))
    finally:
        bridge.close()


def test_a_preparation_leaves_no_task_behind_when_the_worker_refuses(data: Data) -> None:
    async def scenario(bridge: RenderBridge) -> None:
        preparations = Preparations(bridge)
        state, task = preparations.start("dev:one", source(data.single))
        assert state == "queued" and task is not None
        warmed = await task
        assert not warmed.ok and (warmed.status, warmed.code) == (422, "single-slice")
        assert preparations.running() == 0

    bridge = RenderBridge(workers=1, cache_mb=64)
    try:
        asyncio.run(scenario(bridge))
    finally:
        bridge.close()
