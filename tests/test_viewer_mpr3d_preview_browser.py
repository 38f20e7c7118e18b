"""The 3-D pane of a large volume in the browser: a coarse preview first, marked as such in the
pane, then the full volume's frame in its place with the mark gone.

A 256x256x128 CT (8.4 M voxels, over the render worker's preview threshold) opened in the MPR
layout in Chromium; the pane's published state and its DOM are read while the preview shows
and after the full frame replaced it.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from consilium.render.volume_cache import PREVIEW_MIN_VOXELS
from consilium.synthetic import PatientSpec, StudySpec, write_ct_series
from tests.browser import chromium_context
from tests.conftest import CONFIG, CONSILIUM
from tests.test_viewer_browser import DIST, Viewer
from tests.webserver import WebServer

SIZE, SLICES = 256, 128
PANE = "__consilium.mpr.panes['3d']"


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebServer]:
    if not DIST.is_file():
        pytest.fail("the front end is not built: run `make frontend`")
    assert SIZE * SIZE * SLICES >= PREVIEW_MIN_VOXELS
    base = tmp_path_factory.mktemp("mpr3d-preview")
    write_ct_series(StudySpec(PatientSpec("MPR-PRE-1", "Prevyu^Bolshoi"), "20261203"),
                    base / "ct", slices=SLICES, rows=SIZE, columns=SIZE, uid_seed="mpr3d-pre")
    data_dir = base / "var"
    subprocess.run([str(CONSILIUM), "import", "--config", str(CONFIG), "--data-dir",
                    str(data_dir), "--institution", "city-hospital", "--quiet",
                    str(base / "ct")], check=True, capture_output=True)
    server = WebServer(data_dir).start()
    yield server
    server.stop()


def test_the_3d_pane_marks_its_preview_until_the_full_frame(web: WebServer) -> None:
    with chromium_context() as context:
        page = context.new_page()
        viewer = Viewer(page, web)
        viewer.login()
        viewer.open_study(patientId="MPR-PRE-1")
        page.click("[data-testid=toolbar] button[data-id=mpr3d]")
        page.wait_for_function(f"__consilium.mpr && __consilium.mpr.panes && {PANE}.preview",
                               polling=1, timeout=60_000)
        pane = page.locator("[data-testid=mpr-pane-3d]")
        shown: dict[str, Any] = page.evaluate(PANE)
        assert shown["previewFrames"] == 1 and shown["finalFrames"] == 0
        assert "preview" in (pane.get_attribute("class") or "").split()
        assert pane.locator(".mpr-indicator.preview").count() == 1
        page.wait_for_function(f"{PANE}.finalFrames > 0 && !{PANE}.preview", timeout=60_000)
        final: dict[str, Any] = page.evaluate(PANE)
        assert final["previewFrames"] == 1 and final["quality"] == "final"
        assert final["seq"] == shown["seq"]  # the same view, now from the full volume
        assert final["signature"] != shown["signature"]
        assert "preview" not in (pane.get_attribute("class") or "").split()
        assert pane.locator(".mpr-indicator.preview").count() == 0
        assert viewer.errors == []
