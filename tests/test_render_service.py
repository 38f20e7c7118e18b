"""Server-side MPR and 3-D over HTTP and Socket.IO, end to end: a real
``consilium serve`` with its render worker process, data imported with ``consilium import``.

Covers the four routes for the owner, the policy (another institution's user gets the same 404
as for a series that does not exist, anonymous 401, a grant opens access and its revocation
closes it), bad series (422 with the library's message), MPR pixels against the library's own
result (PNG, exact), a 3-D frame against the library (JPEG, close), audit events (one view per
study, exports each time), the Socket.IO stream (stale updates dropped, a sharp frame at the
end), a crashed worker (503, then a new worker answers) with the event loop answering while the
worker hangs; and, in process, the volume cache's memory bound and sticky routing.
"""

from __future__ import annotations

import io
import os
import signal
import sqlite3
import struct
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import socketio
from joserfc import jwt
from PIL import Image
from pydicom import dcmread

from consilium.render.protocol import (
    BadParameter,
    InfoResult,
    InfoSpec,
    Job,
    MprSpec,
    SeriesSource,
    parse_mpr,
    parse_volume,
)
from consilium.render.volume_cache import VolumeCache
from consilium.render.worker_process import Worker
from consilium.render.workers import rendezvous
from consilium.synthetic import PatientSpec, StudySpec, generate_ct_series, write_ct_series
from consilium_rendering import (
    ClipBox,
    ExplicitCamera,
    Orientation,
    Plane,
    RenderRequest,
    VolumeRenderer,
    apply_window,
    build_volume,
    reslice,
    standard_plane,
)
from tests.conftest import CONFIG, CONSILIUM, pydicom_data_dir
from tests.webserver import WebServer

STUDY = StudySpec(PatientSpec("RS-001", "Render^Owner"), "20261120", accession="RS1")
MISSING = "1.2.826.0.1.3680043.8.498.1234567890"


@dataclass
class Data:
    ct: str
    ct_study: str
    ct_paths: list[Path]
    single: str
    report: str
    mixed: str


def _import(data_dir: Path, institution: str, *paths: Path) -> None:
    subprocess.run([str(CONSILIUM), "import", "--config", str(CONFIG), "--data-dir",
                    str(data_dir), "--institution", institution, "--quiet",
                    *(str(p) for p in paths)], check=True, capture_output=True)


def _mixed_sizes(out: Path) -> str:
    """One series whose slices have two sizes (64x64 and 48x48)."""
    out.mkdir(parents=True)
    study = StudySpec(PatientSpec("RS-003", "Mixed^Sizes"), "20261120")
    first = list(generate_ct_series(study, slices=4, rows=64, columns=64, uid_seed="rs-mixed-a"))
    other = list(generate_ct_series(study, slices=3, rows=48, columns=48, uid_seed="rs-mixed-b"))
    for n, ds in enumerate(other):
        ds.StudyInstanceUID = first[0].StudyInstanceUID
        ds.SeriesInstanceUID = first[0].SeriesInstanceUID
        ds.FrameOfReferenceUID = first[0].FrameOfReferenceUID
        x, y, z = (float(v) for v in ds.ImagePositionPatient)
        ds.ImagePositionPatient = [x, y, z + 100.0 + n]
    for n, ds in enumerate(first + other):
        ds.save_as(out / f"mixed-{n}.dcm", enforce_file_format=True)
    return str(first[0].SeriesInstanceUID)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Data:
    root = tmp_path_factory.mktemp("render-data")
    ct_paths = write_ct_series(STUDY, root / "ct", slices=48, rows=128, columns=128,
                               uid_seed="rs-ct")
    single = write_ct_series(StudySpec(PatientSpec("RS-002", "One^Slice"), "20261120"),
                             root / "single", slices=1, rows=64, columns=64, uid_seed="rs-one")
    report_file = pydicom_data_dir() / "test_files" / "test-SR.dcm"
    mixed = _mixed_sizes(root / "mixed")
    first = dcmread(ct_paths[0], stop_before_pixels=True)
    return Data(
        ct=str(first.SeriesInstanceUID), ct_study=str(first.StudyInstanceUID), ct_paths=ct_paths,
        single=str(dcmread(single[0], stop_before_pixels=True).SeriesInstanceUID),
        report=str(dcmread(report_file, stop_before_pixels=True).SeriesInstanceUID),
        mixed=mixed,
    )


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory, data: Data) -> Iterator[WebServer]:
    data_dir = tmp_path_factory.mktemp("render") / "var"
    root = data.ct_paths[0].parent.parent
    _import(data_dir, "city-hospital", root / "ct", root / "single", root / "mixed",
            pydicom_data_dir() / "test_files" / "test-SR.dcm")
    server = WebServer(data_dir, extra_env={
        "CONSILIUM_IDENTITY_LOGIN_ATTEMPTS_PER_MINUTE": "1000"}).start()
    yield server
    server.stop()


def token(web: WebServer, institution: str, subject: str) -> str:
    key = web.signing_key()
    now = int(time.time())
    claims = {"iss": f"{web.url}/dev-idp", "aud": "consilium", "sub": subject, "iat": now,
              "exp": now + 3600, "institution": institution, "roles": ["consultant"],
              "name": f"Render test {subject}"}
    return str(jwt.encode({"alg": "RS256", "kid": key.kid}, claims, key, ["RS256"]))


def api(web: WebServer, institution: str = "city-hospital", subject: str = "render-owner"
        ) -> httpx.Client:
    client = web.client()
    client.headers["Authorization"] = f"Bearer {token(web, institution, subject)}"
    return client


def route(series: str, what: str) -> str:
    return f"/api/render/series/{series}/{what}"


def vector(text: str) -> tuple[float, ...]:
    return tuple(float(v) for v in text.split(","))


def audit_rows(web: WebServer, actor: str) -> list[tuple[str, str, str, str]]:
    web.flush_audit()
    with sqlite3.connect(web.data_dir / "consilium.db") as conn:
        return conn.execute("SELECT action, outcome, study_uid, detail FROM audit_event "
                            "WHERE actor = ? ORDER BY id", (actor,)).fetchall()


def decode(data: bytes) -> np.ndarray[Any, np.dtype[np.uint8]]:
    return np.asarray(Image.open(io.BytesIO(data)))


def stl_triangles(data: bytes) -> np.ndarray[Any, np.dtype[np.float32]]:
    (count,) = struct.unpack_from("<I", data, 80)
    assert len(data) == 84 + 50 * count
    records = np.frombuffer(data, np.dtype([("n", "<f4", 3), ("v", "<f4", (3, 3)),
                                            ("a", "<u2")]), count, 84)
    return records["v"]


# -- the owner ---------------------------------------------------------------------------------


def test_info_mpr_volume_and_stl_for_the_owner(web: WebServer, data: Data) -> None:
    client = api(web)
    info = client.get(route(data.ct, "info"))
    assert info.status_code == 200, info.text
    body = info.json()
    assert body["dimensions"] == [128, 128, 48]
    assert body["spacing"] == pytest.approx([0.7, 0.7, 1.25])
    assert body["study_uid"] == data.ct_study and body["modality"] == "CT"
    assert body["units"] == "HU" and body["default_preset"] == "ct-bone"
    assert np.asarray(body["affine"]).shape == (4, 4)
    assert set(body["planes"]) == {"axial", "coronal", "sagittal"}
    assert body["planes"]["axial"]["size"] == [128, 128]
    assert body["report"]["slices"] == 48 and body["report"]["messages"] == []
    assert {p["name"] for p in body["presets"]} >= {"ct-bone", "ct-lung", "ct-mip", "mr-default"}
    assert info.headers["cache-control"] == "no-store"

    coronal = client.get(route(data.ct, "mpr"), params={"orientation": "coronal"})
    assert coronal.status_code == 200, coronal.text
    assert coronal.headers["content-type"] == "image/jpeg"
    width, height = (int(v) for v in coronal.headers["x-frame-size"].split(","))
    assert decode(coronal.content).shape == (height, width)
    assert vector(coronal.headers["x-plane-y-axis"]) == (0.0, 0.0, -1.0)
    assert "render;dur=" in coronal.headers["server-timing"]

    frame = client.get(route(data.ct, "volume"), params={
        "preset": "ct-bone", "azimuth": 30, "elevation": 10, "size": 192})
    assert frame.status_code == 200, frame.text
    assert decode(frame.content).shape == (192, 192, 3)
    assert frame.headers["x-render-quality"] == "final" and frame.headers["x-preset"] == "ct-bone"
    fast = client.get(route(data.ct, "volume"), params={"quality": "interactive",
                                                         "size": "192,128"})
    assert fast.status_code == 200, fast.text
    height, width, _ = decode(fast.content).shape  # a quarter to half size, adaptive
    assert 48 <= width <= 96 and abs(height / width - 128 / 192) < 0.05

    stl = client.get(route(data.ct, "isosurface.stl"), params={"level": 300, "step": 2})
    assert stl.status_code == 200, stl.text
    assert stl.headers["content-type"] == "model/stl"
    assert "attachment" in stl.headers["content-disposition"]
    triangles = stl_triangles(stl.content)
    assert len(triangles) == int(stl.headers["x-triangles"]) > 100
    low, high = np.asarray(body["bounds"]["min"]), np.asarray(body["bounds"]["max"])
    points = triangles.reshape(-1, 3)
    assert np.all(points >= low - 1.5) and np.all(points <= high + 1.5)


@pytest.fixture(scope="module")
def volume(data: Data) -> Any:
    return build_volume([str(p) for p in data.ct_paths])


def test_mpr_png_is_the_librarys_image(web: WebServer, data: Data, volume: Any) -> None:
    point = (10.0, -5.0, 3.75)
    answer = api(web).get(route(data.ct, "mpr"), params={
        "orientation": "axial", "point": "10,-5,3.75", "window": "40,400", "format": "png"})
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "image/png"
    h = answer.headers
    plane = Plane(vector(h["x-plane-origin"]), vector(h["x-plane-x-axis"]),  # type: ignore[arg-type]
                  vector(h["x-plane-y-axis"]), vector(h["x-plane-spacing"]),  # type: ignore[arg-type]
                  tuple(int(v) for v in h["x-plane-size"].split(",")))  # type: ignore[arg-type]
    assert plane == standard_plane(volume, Orientation.AXIAL, point)
    expected = apply_window(reslice(volume, plane), 40.0, 400.0)
    assert np.array_equal(decode(answer.content), expected)
    # the crosshair point is on the image where the geometry says
    x, y, distance = plane.from_patient(point)
    assert abs(distance) < 1e-9 and 0 <= x < plane.size[0] and 0 <= y < plane.size[1]


def test_oblique_slab_close_to_the_library(web: WebServer, data: Data, volume: Any) -> None:
    from consilium_rendering import Slab, SlabMode, oblique_plane

    answer = api(web).get(route(data.ct, "mpr"), params={
        "orientation": "oblique", "point": "0,0,0", "normal": "0.3,-0.4,0.87", "slab": 6,
        "mode": "mip", "window": "300,1500", "size": 96})
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-slab"] == "6.0,max"
    plane = oblique_plane(volume, (0, 0, 0), (0.3, -0.4, 0.87))
    plane = plane.coarser((max(plane.size) - 1) / 95)
    assert max(plane.size) == 96
    assert vector(answer.headers["x-plane-origin"]) == pytest.approx(plane.origin)
    expected = apply_window(reslice(volume, plane, Slab(6.0, SlabMode.MAX)), 300.0, 1500.0)
    got = decode(answer.content).astype(np.float64)
    assert got.shape == expected.shape
    assert float(np.abs(got - expected).mean()) < 2.0  # JPEG q85


def test_volume_frame_close_to_the_library(web: WebServer, data: Data, volume: Any) -> None:
    answer = api(web).get(route(data.ct, "volume"), params={
        "preset": "ct-bone", "azimuth": 40, "elevation": 20, "zoom": 1.3, "size": 160,
        "clip": "-50,-50,-40,50,10,40", "format": "png"})
    assert answer.status_code == 200, answer.text
    h = answer.headers
    camera = ExplicitCamera(vector(h["x-camera-position"]),  # type: ignore[arg-type]
                            vector(h["x-camera-focal-point"]),  # type: ignore[arg-type]
                            vector(h["x-camera-view-up"]),  # type: ignore[arg-type]
                            float(h["x-camera-view-angle"]))
    renderer = VolumeRenderer(volume)
    try:
        frame = renderer.render(RenderRequest(
            preset="ct-bone", camera=camera, size=(160, 160),
            clip_box=ClipBox((-50.0, -50.0, -40.0), (50.0, 10.0, 40.0))))
    finally:
        renderer.close()
    got = decode(answer.content).astype(np.float64)
    assert got.shape == frame.pixels.shape
    assert float(np.abs(got - frame.pixels).mean()) < 1.0
    assert frame.pixels.max() > 100  # bone is there


# -- the policy --------------------------------------------------------------------------------

ENDPOINTS = [("info", {}), ("mpr", {}), ("volume", {"size": 64}),
             ("isosurface.stl", {"step": 4})]


def test_foreign_user_gets_404_like_a_missing_series(web: WebServer, data: Data) -> None:
    foreign = api(web, "regional-center", "render-foreign")
    for what, params in ENDPOINTS:
        refused = foreign.get(route(data.ct, what), params=params)
        missing = foreign.get(route(MISSING, what), params=params)
        assert refused.status_code == missing.status_code == 404, what
        assert refused.content == missing.content
        assert refused.json()["error"] == "no such series here"
    # the record names what was asked (the series), never the study found behind it: a
    # foreign series and an unknown one leave the same row
    rows = audit_rows(web, "dev:render-foreign")
    assert [(a, o, s) for a, o, s, _ in rows] == [("denied", "denied", "")] * 8
    for (*_, refused_detail), (*_, missing_detail) in zip(rows[::2], rows[1::2], strict=True):
        assert data.ct in refused_detail and data.ct_study not in refused_detail
        assert refused_detail.replace(data.ct, MISSING) == missing_detail


def test_anonymous_gets_401(web: WebServer, data: Data) -> None:
    for what, params in ENDPOINTS:
        answer = web.client().get(route(data.ct, what), params=params)
        assert answer.status_code == 401
        assert answer.headers["www-authenticate"] == "Bearer"


def test_a_grant_opens_access_and_its_revocation_closes_it(web: WebServer, data: Data) -> None:
    from consilium.audit import Actor
    from consilium.identity.grants import grant_study, revoke_grant
    from consilium.service import open_runtime
    from consilium.settings import load_settings

    runtime = open_runtime(load_settings(CONFIG, {"data_dir": web.data_dir}, environ={}))
    consultant = api(web, "regional-center", "render-granted")
    assert consultant.get(route(data.ct, "info")).status_code == 404
    grant = grant_study(runtime.engine, runtime.audit, Actor("dev:petrov"), data.ct_study,
                        institution_id="regional-center", reference="case-render")
    assert grant.id is not None
    assert consultant.get(route(data.ct, "info")).status_code == 200
    assert consultant.get(route(data.ct, "mpr"), params={"orientation": "sagittal"}
                          ).status_code == 200
    revoke_grant(runtime.engine, runtime.audit, Actor("dev:petrov"), grant.id)
    assert consultant.get(route(data.ct, "mpr")).status_code == 404


def test_views_are_audited_once_per_study_and_exports_each_time(web: WebServer, data: Data
                                                                ) -> None:
    client = api(web, subject="render-audited")
    assert client.get(route(data.ct, "info")).status_code == 200
    for orientation in ("axial", "coronal", "sagittal"):
        assert client.get(route(data.ct, "mpr"), params={"orientation": orientation}
                          ).status_code == 200
    assert client.get(route(data.ct, "volume"), params={"size": 64}).status_code == 200
    for _ in range(2):
        assert client.get(route(data.ct, "isosurface.stl"), params={"step": 4}
                          ).status_code == 200
    rows = audit_rows(web, "dev:render-audited")
    assert [(a, o, s) for a, o, s, _ in rows] == [
        ("view", "success", data.ct_study), ("export", "success", data.ct_study),
        ("export", "success", data.ct_study)]
    assert '"isosurface STL"' in rows[1][3]


# -- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize("which, reason, words", [
    ("single", "single-slice", "single slice"),
    ("report", "not-image", "no pixel data"),
    ("mixed", "mixed-size", "size"),
])
def test_bad_series_answer_422_with_the_librarys_message(web: WebServer, data: Data,
                                                          which: str, reason: str, words: str
                                                          ) -> None:
    series = getattr(data, which)
    client = api(web)
    for what, params in ENDPOINTS:
        answer = client.get(route(series, what), params=params)
        assert answer.status_code == 422, (what, answer.text)
        assert answer.json()["reason"] == reason
        assert words in answer.json()["error"].lower()
    assert client.get(route(data.ct, "info")).status_code == 200  # the worker is fine


def test_bad_parameters_400_and_impossible_views_422(web: WebServer, data: Data) -> None:
    client = api(web)
    for params in ({"point": "1,2"}, {"orientation": "diagonal"}, {"window": "40"},
                   {"orientation": "oblique"}, {"slab": "thick"}, {"size": 8}):
        answer = client.get(route(data.ct, "mpr"), params=params)
        assert answer.status_code == 400, params
        assert answer.json()["reason"] == "parameter"
    zero = client.get(route(data.ct, "mpr"), params={"orientation": "oblique",
                                                      "normal": "0,0,0"})
    assert zero.status_code == 422 and "zero vector" in zero.json()["error"]
    preset = client.get(route(data.ct, "volume"), params={"preset": "ct-chrome"})
    assert preset.status_code == 422 and "unknown preset" in preset.json()["error"]
    nothing = client.get(route(data.ct, "isosurface.stl"), params={"level": 90000})
    assert nothing.status_code == 422 and nothing.json()["reason"] == "isosurface"


# -- Socket.IO ---------------------------------------------------------------------------------


def connect(web: WebServer, username: str) -> socketio.Client:
    cookie = web.login(username).cookies["consilium_session"]
    client = socketio.Client(reconnection=False)
    client.connect(web.url, transports=["websocket"],
                   headers={"Cookie": f"consilium_session={cookie}"}, wait_timeout=10)
    return client


def test_stream_drops_stale_updates_and_ends_with_a_sharp_frame(web: WebServer, data: Data
                                                                ) -> None:
    client = connect(web, "petrov")
    frames: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    final = threading.Event()

    @client.on("render:frame")  # type: ignore[untyped-decorator]
    def on_frame(frame: dict[str, Any]) -> bool:
        frames.append(frame)
        if frame["quality"] == "final" and frame["seq"] == 20:
            final.set()
        return True  # the acknowledgement the server's flow control waits for

    @client.on("render:error")  # type: ignore[untyped-decorator]
    def on_error(error: dict[str, Any]) -> None:
        errors.append(error)

    try:
        ack = client.call("render:subscribe", {
            "view": "3d", "series_uid": data.ct, "kind": "volume",
            "params": {"preset": "ct-bone", "size": 256, "elevation": 10}}, timeout=30)
        assert ack["ok"] is True, ack
        assert ack["info"]["dimensions"] == [128, 128, 48]
        deadline = time.monotonic() + 15
        while not frames and time.monotonic() < deadline:
            time.sleep(0.02)
        assert [(f["seq"], f["quality"]) for f in frames] == [(0, "final")]
        for seq in range(1, 21):  # a drag: as fast as the client can send
            client.emit("render:update", {"view": "3d", "seq": seq,
                                          "params": {"azimuth": 4.0 * seq}})
        assert final.wait(15), (frames, errors)
        time.sleep(0.5)  # nothing after the sharp frame
    finally:
        client.disconnect()
    assert errors == []
    during = frames[1:]
    interactive = [f for f in during if f["quality"] == "interactive"]
    assert 1 <= len(interactive) < 20  # stale updates were dropped, not queued
    assert [f["seq"] for f in interactive] == sorted(f["seq"] for f in interactive)
    assert (during[-1]["seq"], during[-1]["quality"]) == (20, "final")
    assert sum(f["quality"] == "final" for f in during) == 1
    for frame in frames:
        image = Image.open(io.BytesIO(frame["image"]))
        assert image.format == "JPEG"
        assert image.size == (frame["width"], frame["height"])
        if frame["quality"] == "final":
            assert image.size == (256, 256)
        else:  # a quarter to half size, adapted to the machine
            assert image.size[0] == image.size[1] and 64 <= image.size[0] <= 128
    assert during[-1]["geometry"]["position"] != frames[0]["geometry"]["position"]


def test_stream_mpr_and_refusals(web: WebServer, data: Data) -> None:
    foreign = connect(web, "kuznetsova")
    try:
        refused = foreign.call("render:subscribe", {"view": "axial", "series_uid": data.ct,
                                                    "kind": "mpr"}, timeout=10)
        missing = foreign.call("render:subscribe", {"view": "axial", "series_uid": MISSING,
                                                    "kind": "mpr"}, timeout=10)
    finally:
        foreign.disconnect()
    assert refused == missing == {"ok": False, "status": 404, "error": "no such series here",
                                  "reason": ""}
    owner = connect(web, "petrov")
    frames: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []

    @owner.on("render:frame")  # type: ignore[untyped-decorator]
    def on_frame(frame: dict[str, Any]) -> bool:
        frames.append(frame)
        return True

    owner.on("render:error", errors.append)
    try:
        bad = owner.call("render:subscribe", {"view": "x", "series_uid": data.single,
                                              "kind": "mpr"}, timeout=10)
        assert bad["ok"] is False and bad["status"] == 422 and bad["reason"] == "single-slice"
        typo = owner.call("render:subscribe", {"view": "y", "series_uid": data.ct,
                                               "kind": "volume", "params": {"azimut": 3}},
                          timeout=10)
        assert typo["status"] == 400 and "unknown parameter(s) azimut" in typo["error"]
        ack = owner.call("render:subscribe", {"view": "axial", "series_uid": data.ct,
                                              "kind": "mpr", "params": {"size": 0}}, timeout=10)
        assert ack["ok"] is True
        owner.emit("render:update", {"view": "axial", "params": {"point": [0, 0, 10]},
                                     "final": True})
        owner.emit("render:update", {"view": "axial", "params": {"point": "nowhere"}})
        deadline = time.monotonic() + 10
        while (len(frames) < 2 or not errors) and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        owner.disconnect()
    assert [(f["seq"], f["quality"]) for f in frames] == [(0, "final"), (1, "final")]
    assert frames[1]["geometry"]["origin"][2] == pytest.approx(10.0)
    assert errors and errors[0]["status"] == 400 and "point" in errors[0]["error"]


# -- worker crash ------------------------------------------------------------------------------


def render_worker_pid(web: WebServer) -> int:
    assert web.proc is not None
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        comm = text[text.index("(") + 1 : text.rindex(")")]
        ppid = int(text[text.rindex(")") + 2 :].split()[1])
        if ppid == web.proc.pid and comm == "render-0":
            return int(stat.parent.name)
    raise AssertionError("no render worker process")


def test_a_killed_worker_is_replaced_and_the_loop_never_waits(web: WebServer, data: Data
                                                              ) -> None:
    client = api(web)
    assert client.get(route(data.ct, "mpr")).status_code == 200
    worker = render_worker_pid(web)
    os.kill(worker, signal.SIGSTOP)  # a render that takes forever
    answers: list[httpx.Response] = []
    hung = threading.Thread(target=lambda: answers.append(api(web).get(route(data.ct, "mpr"))))
    hung.start()
    try:
        time.sleep(0.5)
        started = time.monotonic()
        assert web.client().get("/healthz").status_code == 200  # the event loop is free
        assert time.monotonic() - started < 1.0
        assert not answers
    finally:
        os.kill(worker, signal.SIGKILL)
    hung.join(10)
    assert answers and answers[0].status_code == 503
    assert answers[0].json()["reason"] == "worker-restarted"
    assert answers[0].headers["retry-after"] == "1"
    again = client.get(route(data.ct, "mpr"))
    assert again.status_code == 200, again.text
    assert render_worker_pid(web) != worker
    assert "render worker 0 (pid" in web.log and "restarting it" in web.log


# -- in process: the cache and the routing -----------------------------------------------------


@dataclass(eq=False)
class FakeEntry:
    size: int
    closed: bool = False

    def cost(self) -> int:
        return self.size

    def close(self) -> None:
        self.closed = True


def test_volume_cache_keeps_a_memory_bound_in_lru_order() -> None:
    cache: VolumeCache[FakeEntry] = VolumeCache(100)
    a, b, c = FakeEntry(40), FakeEntry(40), FakeEntry(40)
    assert cache.put("a", a) == [] and cache.put("b", b) == []
    assert cache.get("a") is a  # a is now the most recently used
    assert cache.put("c", c) == ["b"] and b.closed and not a.closed
    assert cache.keys() == ["a", "c"] and cache.total == 80
    a.size = 90  # a renderer was attached to a: it grew in place
    assert cache.trim(keep="a") == ["c"] and cache.keys() == ["a"]
    assert cache.trim(keep="a") == [] and cache.total == 90  # alone over budget: kept
    assert cache.make_room(50) == ["a"] and len(cache) == 0 and cache.evictions == 3


def test_worker_evicts_volumes_beyond_its_budget(data: Data, tmp_path: Path) -> None:
    other = write_ct_series(StudySpec(PatientSpec("RS-009", "Second^Volume"), "20261120"),
                            tmp_path / "other", slices=48, rows=128, columns=128,
                            uid_seed="rs-other")

    def source(paths: list[Path]) -> SeriesSource:
        ds = dcmread(paths[0], stop_before_pixels=True)
        return SeriesSource(str(ds.SeriesInstanceUID), str(ds.StudyInstanceUID),
                            tuple(str(p) for p in paths), SeriesSource.digest([str(paths)]))

    first, second = source(data.ct_paths), source(other)
    voxel_bytes = 128 * 128 * 48 * 2
    worker = Worker(0, budget_bytes=int(voxel_bytes * 1.5))
    try:
        result = worker.handle(Job(first, InfoSpec()))
        assert isinstance(result, InfoResult) and result.timing.build_ms is not None
        warm = worker.handle(Job(first, MprSpec()))
        assert warm.timing.build_ms is None  # type: ignore[union-attr]
        worker.handle(Job(second, InfoSpec()))
        assert worker.cache.keys() == [second.key]  # the first made room for the second
        assert worker.cache.total <= worker.cache.budget
        again = worker.handle(Job(first, InfoSpec()))
        assert again.timing.build_ms is not None  # type: ignore[union-attr]
    finally:
        worker.close()


def test_routing_is_sticky_and_spreads() -> None:
    uids = [f"1.2.3.{n}" for n in range(400)]
    picks = [rendezvous(uid, 4) for uid in uids]
    assert picks == [rendezvous(uid, 4) for uid in uids]
    assert all(60 < picks.count(w) < 140 for w in range(4))
    # a fifth worker moves only the series it now wins
    moved = [uid for uid, w in zip(uids, picks, strict=True) if rendezvous(uid, 5) != w]
    assert all(rendezvous(uid, 5) == 4 for uid in moved)


def test_parameters_parse_from_query_text_and_json_alike() -> None:
    assert parse_mpr({"point": "1,2,3", "slab": "5", "mode": "minip"}) == parse_mpr(
        {"point": [1, 2, 3], "slab": 5, "mode": "MinIP"})
    spec = parse_volume({"size": "300,200", "clip": "0,0,0,1,1,1"}, ["0,0,0,0,0,1"])
    assert spec.size == (300, 200) and spec.clip_box == ((0, 0, 0), (1, 1, 1))
    assert len(spec.clip_planes) == 1
    with pytest.raises(BadParameter, match="zoom"):
        parse_volume({"zoom": "0"})
    with pytest.raises(BadParameter, match="jpeg_quality"):
        parse_mpr({"jpeg_quality": "101"})
