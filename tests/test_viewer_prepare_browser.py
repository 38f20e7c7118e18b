"""The viewer asks the render service to prepare a volume once the series' first image is on
screen, and the MPR / 3-D layout opened afterwards finds it built.

Chromium opens a 256x256x128 CT (a volume with a coarse 3-D preview); the page's record of the
request (``__consilium.page.prepare``) is read against the first image's time, the request seen
on the wire, the server's log says what was prepared; the layout's frames, read from the page's
Socket.IO traffic, report no build, and the render worker built the volume once. A series of a
few images (not a volume) is not prepared. Real server, real Chromium; nothing mocked.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest
from pydicom import dcmread

from consilium.render.volume_cache import PREVIEW_MIN_VOXELS
from consilium.synthetic import PatientSpec, StudySpec, write_ct_series
from tests.browser import chromium_context
from tests.conftest import CONFIG, CONSILIUM
from tests.test_viewer_browser import DIST, Viewer
from tests.webserver import WebServer

SIZE, SLICES = 256, 128
PANES = ("axial", "coronal", "sagittal", "3d")


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[WebServer, str, str]]:
    if not DIST.is_file():
        pytest.fail("the front end is not built: run `make frontend`")
    assert SIZE * SIZE * SLICES >= PREVIEW_MIN_VOXELS
    base = tmp_path_factory.mktemp("viewer-prepare")
    volume = write_ct_series(StudySpec(PatientSpec("PREP-VOL", "Obyom^Gotov"), "20261203"),
                             base / "ct", slices=SLICES, rows=SIZE, columns=SIZE,
                             uid_seed="viewer-prepare")
    few = write_ct_series(StudySpec(PatientSpec("PREP-FEW", "Malo^Snimkov"), "20261203"),
                          base / "few", slices=4, rows=64, columns=64, uid_seed="viewer-few")
    data_dir = base / "var"
    subprocess.run([str(CONSILIUM), "import", "--config", str(CONFIG), "--data-dir",
                    str(data_dir), "--institution", "city-hospital", "--quiet",
                    str(base / "ct"), str(base / "few")], check=True, capture_output=True)
    server = WebServer(data_dir).start()
    uids = [str(dcmread(p[0], stop_before_pixels=True).SeriesInstanceUID) for p in (volume, few)]
    yield server, uids[0], uids[1]
    server.stop()


def builds(web: WebServer, series: str) -> int:
    return len(re.findall(rf"built series {re.escape(series)} ", web.log))


def test_the_viewer_prepares_the_volume_after_the_first_image(
        web: tuple[WebServer, str, str]) -> None:
    server, series, few = web
    with chromium_context() as context:
        page = context.new_page()
        asked: list[tuple[str, str]] = []
        page.on("request", lambda r: asked.append((r.method, r.url)) if "/prepare" in r.url
                else None)
        frames: list[dict[str, Any]] = []

        def on_socket(ws: Any) -> None:
            def received(payload: str | bytes) -> None:
                if isinstance(payload, str) and '"render:frame"' in payload:
                    frames.append(json.loads(payload[payload.index("["):])[1])
            ws.on("framereceived", received)

        page.on("websocket", on_socket)
        viewer = Viewer(page, server)
        viewer.login()

        # a few images are not a volume: nothing is asked (the one request seen below is the
        # volume's, asked after this series' first image)
        viewer.open_study(patientId="PREP-FEW")
        assert page.evaluate("__consilium.page.prepare") is None

        viewer.open_study(patientId="PREP-VOL")
        page.wait_for_function("__consilium.page.prepare && __consilium.page.prepare.state",
                               timeout=30_000)
        record = page.evaluate("__consilium.page.prepare")
        first_at = page.evaluate("__consilium.firstImageAt")
        assert record["seriesUID"] == series and record["status"] == 202
        assert record["state"] == "queued"
        assert record["at"] >= first_at  # after the first image was painted, never before
        assert asked == [("POST", f"{server.url}/api/render/series/{series}/prepare")]
        deadline = time.monotonic() + 60
        while f"series {series} prepared for rendering (preview)" not in server.log:
            assert time.monotonic() < deadline, server.log[-3000:]
            page.wait_for_timeout(100)
        assert builds(server, series) == 1

        page.click("[data-testid=toolbar] button[data-id=mpr3d]")
        ready = " && ".join(f"__consilium.mpr.panes['{v}'].frames > 0" for v in PANES)
        page.wait_for_function(f"__consilium.mpr && __consilium.mpr.panes && {ready}",
                               polling=50, timeout=60_000)
        firsts = {f["view"].split(".")[0]: f for f in reversed(frames)}
        assert set(firsts) >= set(PANES)
        assert [firsts[v]["build_ms"] for v in PANES] == [None] * 4  # nothing built for them
        assert firsts["3d"]["preview"] is True
        assert builds(server, series) == 1
        assert asked == [("POST", f"{server.url}/api/render/series/{series}/prepare")]
        assert f"series {few} prepared" not in server.log
        assert viewer.errors == []
