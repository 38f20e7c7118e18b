"""A large volume's first 3-D frame: a coarse preview at once, then the full volume's frame.

The library's coarse copy keeps every n-th voxel in place; the render worker answers a stream's
first 3-D frame from it while the full ray caster is cold and marks it; the stream sends that
preview and then, unasked, the full frame of the same view, whose pixels are those of a worker
that never made a preview. End to end with a real ``consilium serve`` and Socket.IO client.
"""

from __future__ import annotations

import asyncio
import io
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import socketio
from PIL import Image
from pydicom import dcmread

from consilium.render.protocol import (
    FrameResult,
    InfoSpec,
    IsosurfaceSpec,
    Job,
    MprSpec,
    Output,
    SeriesSource,
    VolumeSpec,
)
from consilium.render.volume_cache import PREVIEW_MIN_VOXELS
from consilium.render.worker_process import Worker
from consilium.render.workers import JobQueue, Pending
from consilium.synthetic import PatientSpec, StudySpec, write_ct_series
from consilium_rendering import COARSE_VOXELS, coarse_volume, volume_from_array
from consilium_rendering.coarse import coarse_steps
from tests.conftest import CONFIG, CONSILIUM
from tests.webserver import WebServer

STUDY = StudySpec(PatientSpec("RP-001", "Preview^Large"), "20261203", accession="RP1")
SIZE = 256
SLICES = 128  # 256 x 256 x 128 = 8.4 M voxels: over PREVIEW_MIN_VOXELS


@pytest.fixture(scope="module")
def large(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    assert SIZE * SIZE * SLICES >= PREVIEW_MIN_VOXELS
    root = tmp_path_factory.mktemp("preview-data")
    return write_ct_series(STUDY, root / "ct", slices=SLICES, rows=SIZE, columns=SIZE,
                           uid_seed="rp-ct")


def source(paths: list[Path]) -> SeriesSource:
    ds = dcmread(paths[0], stop_before_pixels=True)
    return SeriesSource(str(ds.SeriesInstanceUID), str(ds.StudyInstanceUID),
                        tuple(str(p) for p in paths), SeriesSource.digest([str(paths)]))


def pixels(data: bytes) -> np.ndarray[Any, np.dtype[np.uint8]]:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def test_coarse_copy_keeps_every_nth_voxel_in_place() -> None:
    voxels = (np.arange(300 * 512 * 512, dtype=np.int32) % 2999 - 1000).astype(np.int16)
    voxels = voxels.reshape(300, 512, 512)
    affine = np.array([[0.7, 0, 0, -179.0], [0, 0.7, 0, -150.0], [0, 0.1, 1.25, 20.0],
                       [0, 0, 0, 1]])  # a sheared (tilted) grid
    volume = volume_from_array(voxels, affine)
    assert coarse_steps(volume) == (4, 4, 3)  # 0.7 mm in-plane, 1.25 mm slices: near isotropic
    coarse = coarse_volume(volume)
    assert coarse.voxels.size <= COARSE_VOXELS
    assert coarse.shape == (100, 128, 128)
    assert coarse.value_range == volume.value_range  # presets resolve against the full range
    for i, j, k in [(0, 0, 0), (5, 17, 9), (127, 127, 99)]:
        position = coarse.index_to_patient([i, j, k])
        assert np.allclose(position, volume.index_to_patient([4 * i, 4 * j, 3 * k]))
        assert coarse.voxels[k, j, i] == volume.voxels[3 * k, 4 * j, 4 * i]
    small = volume_from_array(voxels[:40, :64, :64], affine)
    assert coarse_steps(small) == (1, 1, 1)


def test_quick_jobs_go_before_previews_slow_ones_and_background_work_queued_earlier() -> None:
    loop = asyncio.new_event_loop()
    try:
        series = SeriesSource("1.2.3", "1.2", (), "x")
        jobs = JobQueue()
        names: dict[int, str] = {}

        def put(name: str, spec: Any, background: bool = False) -> None:
            pending = Pending(Job(series, spec, background), loop, loop.create_future())
            names[id(pending)] = name
            jobs.put(pending)

        put("prepare info", InfoSpec(), background=True)
        put("3d full", VolumeSpec())
        put("stl", IsosurfaceSpec())
        put("prepare 3d", VolumeSpec(preview=True), background=True)
        put("axial", MprSpec())
        put("3d preview", VolumeSpec(preview=True))
        put("info", InfoSpec())
        put("3d drag", VolumeSpec(quality="interactive"))
        jobs.put(None)  # closing
        order = [jobs.get_nowait() for _ in range(jobs.qsize())]
        assert order[0] is None
        assert [names[id(p)] for p in order[1:]] == [
            "axial", "info", "3d drag", "3d preview", "3d full", "stl", "prepare info",
            "prepare 3d"]
    finally:
        loop.close()


def test_worker_answers_a_preview_then_the_full_volumes_frame(large: list[Path]) -> None:
    series = source(large)
    png = Output(image_format="png")
    spec = VolumeSpec(size=(160, 128), elevation=15.0, output=png)
    worker, fresh = Worker(0, 2**30), Worker(1, 2**30)
    try:
        preview = worker.handle(Job(series, VolumeSpec(**{**spec.__dict__, "preview": True})))
        assert isinstance(preview, FrameResult) and preview.preview
        assert preview.geometry["preview"]["dimensions"] == [128, 128, 64]
        full = worker.handle(Job(series, spec))
        assert isinstance(full, FrameResult) and not full.preview
        assert "preview" not in full.geometry
        assert full.geometry["position"] == preview.geometry["position"]  # the same camera
        # once the full ray caster is warm, a preview is never made again
        again = worker.handle(Job(series, VolumeSpec(**{**spec.__dict__, "preview": True})))
        assert isinstance(again, FrameResult) and not again.preview
        # the final pixels are the full volume's: those of a worker that never made a preview
        reference = fresh.handle(Job(series, spec))
        assert isinstance(reference, FrameResult)
        assert np.array_equal(pixels(full.data), pixels(reference.data))
        assert np.array_equal(pixels(again.data), pixels(reference.data))
        assert not np.array_equal(pixels(preview.data), pixels(reference.data))
        entry = worker.cache.get(series.key)
        assert entry is not None and entry.coarse_renderer() is None  # the copy was dropped
    finally:
        worker.close()
        fresh.close()


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory, large: list[Path]) -> Iterator[WebServer]:
    data_dir = tmp_path_factory.mktemp("preview") / "var"
    subprocess.run([str(CONSILIUM), "import", "--config", str(CONFIG), "--data-dir",
                    str(data_dir), "--institution", "city-hospital", "--quiet",
                    str(large[0].parent)], check=True, capture_output=True)
    server = WebServer(data_dir).start()
    yield server
    server.stop()


def test_stream_sends_a_marked_preview_then_the_full_frame(web: WebServer, large: list[Path]
                                                           ) -> None:
    cookie = web.login("petrov").cookies["consilium_session"]
    client = socketio.Client(reconnection=False)
    client.connect(web.url, transports=["websocket"],
                   headers={"Cookie": f"consilium_session={cookie}"}, wait_timeout=10)
    frames: list[dict[str, Any]] = []
    final = threading.Event()

    @client.on("render:frame")  # type: ignore[untyped-decorator]
    def on_frame(frame: dict[str, Any]) -> bool:
        frames.append(frame)
        if frame["quality"] == "final":
            final.set()
        return True

    params = {"preset": "ct-bone", "size": "160,128", "elevation": 15, "format": "png"}
    try:
        ack = client.call("render:subscribe", {"view": "3d", "series_uid": source(large).series_uid,
                                               "kind": "volume", "params": params}, timeout=60)
        assert ack["ok"] is True, ack
        assert final.wait(60), frames
        time.sleep(0.3)  # nothing more follows unasked
    finally:
        client.disconnect()
    assert [(f["seq"], f["quality"], f["preview"]) for f in frames] == [
        (0, "interactive", True), (0, "final", False)]
    first, last = frames
    assert first["geometry"]["preview"]["dimensions"] == [128, 128, 64]
    assert first["geometry"]["position"] == last["geometry"]["position"]
    # the final frame is the full volume's: the same as a worker that never made a preview
    worker = Worker(0, 2**30)
    try:
        reference = worker.handle(Job(source(large), VolumeSpec(
            preset="ct-bone", size=(160, 128), elevation=15.0, output=Output(image_format="png"))))
    finally:
        worker.close()
    assert isinstance(reference, FrameResult)
    assert np.array_equal(pixels(last["image"]), pixels(reference.data))
