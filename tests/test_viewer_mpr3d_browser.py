"""The MPR / 3D layout of the web viewer in real Chromium against a real ``consilium serve``
with its render worker: a CT phantom switched to axial, coronal, sagittal and
3D panes streamed over Socket.IO; the crosshair checked against the frames' patient geometry
(click, wheel, rotation to oblique planes, reset), slab MIP, windowing, the 3D pane's orbit
(interactive frames then a sharp one), preset and clip box, the bone STL download, the URL
(reload restores the layout, Esc goes back to 2D) and a single-slice series' message.

The page publishes its state on ``window.__consilium.mpr`` (frontend/src/capabilities/mpr3d);
the tests wait on it and never sleep. The built front end (``make frontend``) is required.

``CONSILIUM_UPDATE_SCREENSHOT=1`` also writes docs/screenshot-mpr3d.png.
"""

from __future__ import annotations

import math
import os
import shutil
import struct
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from pydicom import dcmread

from consilium.synthetic import PatientSpec, StudySpec, write_ct_series
from tests.browser import chromium_context
from tests.conftest import CONFIG, CONSILIUM, ROOT
from tests.test_viewer_browser import DIST, Viewer
from tests.webserver import WebServer

# a small phantom at a coarse spacing: the whole chest, cheap to build and to ray cast
ROWS = 192
SPACING_MM = 1.9
SLICES = 64
THICKNESS_MM = 3.75
VIEWS = ("axial", "coronal", "sagittal", "3d")
MPR = "__consilium.mpr"


@pytest.fixture(scope="module")
def series(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    base = tmp_path_factory.mktemp("mpr3d")
    ct = write_ct_series(StudySpec(PatientSpec("MPR-001", "Volumov^Viktor"), "20261121"),
                         base / "ct", slices=SLICES, rows=ROWS, columns=ROWS,
                         pixel_spacing_mm=SPACING_MM, slice_thickness_mm=THICKNESS_MM,
                         series_description=f"AXIAL {THICKNESS_MM}mm", uid_seed="mpr3d-ct")
    one = write_ct_series(StudySpec(PatientSpec("MPR-002", "Odin^Srez"), "20261121"),
                          base / "one", slices=1, rows=64, columns=64, uid_seed="mpr3d-one")
    data_dir = base / "var"
    subprocess.run([str(CONSILIUM), "import", "--config", str(CONFIG), "--data-dir",
                    str(data_dir), "--institution", "city-hospital", "--quiet",
                    str(base / "ct"), str(base / "one")], check=True, capture_output=True)
    return {
        "data_dir": data_dir,
        "ct": str(dcmread(ct[0], stop_before_pixels=True).SeriesInstanceUID),
        "one": str(dcmread(one[0], stop_before_pixels=True).SeriesInstanceUID),
    }


@pytest.fixture(scope="module")
def web(series: dict[str, Any]) -> Iterator[WebServer]:
    if not DIST.is_file():
        pytest.fail("the front end is not built: run `make frontend`")
    server = WebServer(series["data_dir"]).start()
    yield server
    server.stop()


class Mpr(Viewer):
    """The study viewer's page object, plus the MPR / 3D layout."""

    def state(self) -> dict[str, Any]:
        return dict(self.page.evaluate(MPR))

    def pane(self, view: str) -> dict[str, Any]:
        return dict(self.page.evaluate(f"{MPR}.panes[{view!r}]"))

    def settled(self, *views: str, extra: str = "true", timeout: float = 30_000) -> None:
        """Wait until each view shows a final frame of the last update sent to it."""
        conditions = " && ".join(
            f"(p => p.seq >= p.sent && p.quality === 'final' && !p.error)({MPR}.panes[{v!r}])"
            for v in views)
        try:
            self.wait(f"{MPR} && {MPR}.active && {conditions} && ({extra})", timeout=timeout)
        except PlaywrightTimeout:
            state = self.page.evaluate(f"JSON.stringify({{...{MPR}, info: null}})")
            pytest.fail(f"not settled ({', '.join(views)}; {extra}): {state}")

    def to_screen(self, view: str, point: list[float]) -> tuple[float, float]:
        """Page coordinates of patient ``point`` in an MPR pane, from its frame's geometry."""
        pane = self.pane(view)
        g = pane["geometry"]
        d = np.subtract(point, g["origin"])
        px = float(d @ np.array(g["x_axis"])) / g["spacing"][0]
        py = float(d @ np.array(g["y_axis"])) / g["spacing"][1]
        left, top, width, height = pane["rect"]
        return left + (px + 0.5) * width / pane["width"], top + (py + 0.5) * height / pane["height"]

    def mm_per_css_px(self, view: str) -> float:
        pane = self.pane(view)
        return float(pane["geometry"]["spacing"][0] * pane["width"] / pane["rect"][2])

    def drag_until(self, start: tuple[float, float], end: tuple[float, float], condition: str,
                   button: str = "left", modifiers: str | None = None) -> None:
        """Press, move half way, wait for ``condition`` (e.g. an interactive frame), finish."""
        mouse, keyboard = self.page.mouse, self.page.keyboard
        if modifiers:
            keyboard.down(modifiers)
        mouse.move(*start)
        mouse.down(button=button)  # type: ignore[arg-type]
        middle = ((start[0] + end[0]) / 2, (start[1] + end[1]) / 2)
        mouse.move(*middle, steps=6)
        self.wait(condition)
        mouse.move(*end, steps=6)
        mouse.up(button=button)  # type: ignore[arg-type]
        if modifiers:
            keyboard.up(modifiers)

    def center_of(self, view: str) -> tuple[float, float]:
        box = self.page.locator(f"[data-testid=mpr-pane-{view}]").bounding_box()
        assert box is not None
        return box["x"] + box["width"] / 2, box["y"] + box["height"] / 2


@pytest.fixture(scope="module")
def viewer(web: WebServer) -> Iterator[Mpr]:
    with chromium_context() as context:
        page = context.new_page()
        page.set_viewport_size({"width": 1100, "height": 760})  # small panes: cheap rays
        v = Mpr(page, web)
        v.login()
        yield v
        assert v.errors == []


def differs(a: list[int], b: list[int]) -> float:
    return float(np.abs(np.subtract(a, b)).mean())


def angle_deg(a: list[float], b: list[float]) -> float:
    cos = float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))
    return math.degrees(math.acos(max(-1.0, min(1.0, cos))))


def test_four_panes_of_the_right_aspect(viewer: Mpr, series: dict[str, Any]) -> None:
    viewer.open_study(patientId="MPR-001")
    viewer.page.click("[data-testid=toolbar] button[data-id=mpr3d]")
    viewer.settled(*VIEWS, timeout=60_000)
    assert f"series={series['ct']}" in viewer.page.url and "layout=mpr" in viewer.page.url
    state = viewer.state()
    info = state["info"]
    assert info["dimensions"] == [ROWS, ROWS, SLICES]
    assert state["point"] == pytest.approx(info["center"])
    for view in VIEWS:
        pane = state["panes"][view]
        assert pane["nonBlack"] > 0.05, (view, pane["nonBlack"])
        _, _, width, height = pane["rect"]
        assert width / height == pytest.approx(pane["width"] / pane["height"], rel=0.01)
        box = viewer.page.locator(f"[data-testid=mpr-pane-{view}]").bounding_box()
        assert box is not None
        if view == "3d":  # a volume frame is the pane's size
            assert pane["width"] == pytest.approx(box["width"], abs=1)
            assert pane["height"] == pytest.approx(box["height"], abs=1)
            continue
        # an MPR frame has the shape of its plane through the volume, fitted into the pane
        plane = info["planes"][view]
        assert pane["width"] / pane["height"] == pytest.approx(
            plane["size"][0] / plane["size"][1], rel=0.03)
        assert max(width, height) == pytest.approx(
            min(box["width"] / plane["size"][0], box["height"] / plane["size"][1])
            * max(plane["size"]), abs=2)
    fov, depth = ROWS * SPACING_MM, SLICES * THICKNESS_MM
    coronal = state["panes"]["coronal"]
    assert coronal["width"] / coronal["height"] == pytest.approx(fov / depth, rel=0.05)
    # the crosshair: each MPR pane draws the two other planes
    for view in ("axial", "coronal", "sagittal"):
        planes = viewer.page.eval_on_selector_all(
            f"[data-testid=mpr-pane-{view}] svg line", "ls => ls.map(l => l.dataset.plane)")
        assert set(planes) == {"axial", "coronal", "sagittal"} - {view}


def test_click_moves_the_other_planes_to_the_point(viewer: Mpr) -> None:
    state = viewer.state()
    target = list(np.add(state["point"], [40.0, -30.0, 0.0]))
    x, y = viewer.to_screen("axial", target)
    tolerance = 1.5 * viewer.mm_per_css_px("axial")
    viewer.page.mouse.click(x, y)
    viewer.settled("axial", "coronal", "sagittal",
                   extra=f"Math.abs({MPR}.point[0] - {target[0]}) < {tolerance}")
    state = viewer.state()
    point = state["point"]
    assert point[0] == pytest.approx(target[0], abs=tolerance)
    assert point[1] == pytest.approx(target[1], abs=tolerance)
    assert point[2] == pytest.approx(target[2], abs=1e-6)  # the axial plane stays
    # the coronal plane (normal +Y) and the sagittal plane (normal -X) pass through the point
    for view in ("coronal", "sagittal"):
        g = state["panes"][view]["geometry"]
        assert float(np.dot(g["origin"], g["normal"])) == pytest.approx(
            float(np.dot(point, g["normal"])), abs=1e-3)
    # the coronal pane draws the sagittal plane's line where the point is
    cx, _ = viewer.to_screen("coronal", point)
    xs = viewer.page.eval_on_selector_all(
        "[data-testid=mpr-pane-coronal] svg line[data-plane=sagittal]",
        "ls => ls.flatMap(l => [+l.getAttribute('x1'), +l.getAttribute('x2')])")
    box = viewer.page.locator("[data-testid=mpr-pane-coronal]").bounding_box()
    assert box is not None
    assert xs and all(abs(box["x"] + v - cx) < 1.0 for v in xs)


def test_wheel_pages_by_the_voxel_step(viewer: Mpr) -> None:
    before = viewer.state()["point"]
    viewer.page.mouse.move(*viewer.center_of("axial"))
    viewer.page.mouse.wheel(0, 100)
    viewer.settled("axial", extra=f"{MPR}.point[2] !== {before[2]}")
    state = viewer.state()
    assert abs(state["point"][2] - before[2]) == pytest.approx(THICKNESS_MM, abs=1e-6)
    g = state["panes"]["axial"]["geometry"]
    assert float(np.dot(g["origin"], g["normal"])) == pytest.approx(state["point"][2], abs=1e-3)
    viewer.page.keyboard.press("ArrowUp")  # and back
    viewer.settled("axial", extra=f"Math.abs({MPR}.point[2] - {before[2]}) < 1e-6")


def test_slab_mip_and_windowing(viewer: Mpr) -> None:
    thin = viewer.pane("coronal")
    viewer.page.fill("[data-testid=mpr-bar] input[name=slab]", "10")
    viewer.page.press("[data-testid=mpr-bar] input[name=slab]", "Enter")
    viewer.page.select_option("[data-testid=mpr-bar] select[name=slab-mode]", "mip")
    viewer.settled("axial", "coronal", "sagittal", extra=" && ".join(
        f"{MPR}.panes.{v}.geometry.slab && {MPR}.panes.{v}.geometry.slab.thickness_mm === 10"
        for v in ("axial", "coronal", "sagittal")))
    slab = viewer.pane("coronal")
    assert slab["geometry"]["slab"] == {"thickness_mm": 10, "mode": "max"}
    assert "slab 10 mm MIP" in viewer.page.inner_text("[data-testid=mpr-pane-coronal]")
    assert slab["mean"] >= thin["mean"] - 0.5  # a maximum is never darker
    assert differs(slab["signature"], thin["signature"]) > 0.5

    viewer.page.mouse.move(*viewer.center_of("coronal"))
    viewer.page.keyboard.press("2")  # lung window, as in the 2D viewer
    viewer.settled("coronal", extra=f"{MPR}.panes.coronal.geometry.window[1] === 1500")
    assert viewer.pane("coronal")["geometry"]["window"] == [-600, 1500]
    x, y = viewer.center_of("sagittal")
    viewer.drag((x, y), (x + 60, y + 30), button="right")
    viewer.settled("axial", "coronal", "sagittal",
                   extra=f"{MPR}.window[1] !== 1500 && {MPR}.panes.sagittal.geometry.window[1]"
                         f" === {MPR}.window[1]")
    window = viewer.state()["window"]
    assert window[1] > 1500 and window[0] > -600
    viewer.page.fill("[data-testid=mpr-bar] input[name=slab]", "0")
    viewer.page.press("[data-testid=mpr-bar] input[name=slab]", "Enter")
    viewer.page.select_option("[data-testid=mpr-bar] select[name=window]", "")
    viewer.settled("axial", "coronal", "sagittal",
                   extra=f"!{MPR}.panes.coronal.geometry.slab && {MPR}.window[1] === 400")


def test_rotating_the_crosshair_gives_oblique_planes_and_reset(viewer: Mpr) -> None:
    state = viewer.state()
    cx, cy = viewer.to_screen("axial", state["point"])
    r = 70.0
    # shift-drag about the crosshair centre, by 30 degrees on the screen
    start = (cx + r, cy)
    end = (cx + r * math.cos(math.radians(30)), cy + r * math.sin(math.radians(30)))
    viewer.drag_until(start, end, f"{MPR}.planes.coronal.oblique", modifiers="Shift")
    viewer.settled("coronal", "sagittal", extra=f"{MPR}.panes.coronal.geometry.normal[0] !== 0")
    state = viewer.state()
    assert not state["planes"]["axial"]["oblique"]
    for view, standard in (("coronal", [0.0, 1.0, 0.0]), ("sagittal", [-1.0, 0.0, 0.0])):
        g = state["panes"][view]["geometry"]
        assert g["normal"] == pytest.approx(state["planes"][view]["normal"], abs=1e-6)
        assert g["normal"][2] == pytest.approx(0, abs=1e-6)  # still about the axial normal
        assert angle_deg(g["normal"], standard) == pytest.approx(30, abs=4)
        assert float(np.dot(g["origin"], g["normal"])) == pytest.approx(
            float(np.dot(state["point"], g["normal"])), abs=1e-3)
    assert "oblique" in viewer.page.inner_text("[data-testid=mpr-pane-coronal]")
    viewer.page.click("[data-testid=mpr-bar] button[data-id=mpr-reset]")
    viewer.settled("axial", "coronal", "sagittal", extra=f"!{MPR}.planes.coronal.oblique")
    state = viewer.state()
    assert state["panes"]["coronal"]["geometry"]["normal"] == pytest.approx([0, 1, 0])
    assert state["panes"]["sagittal"]["geometry"]["normal"] == pytest.approx([-1, 0, 0])
    assert state["point"] == pytest.approx(state["info"]["center"])

    # the same by a handle at the end of a line: the sagittal pane's handle of the axial plane
    # turns the axial and coronal planes about the left-right axis
    pane = viewer.page.locator("[data-testid=mpr-pane-sagittal]").bounding_box()
    assert pane is not None
    handle = viewer.page.eval_on_selector(
        "[data-testid=mpr-pane-sagittal] circle[data-handle=axial]",
        "c => [+c.getAttribute('cx'), +c.getAttribute('cy')]")
    hx, hy = pane["x"] + handle[0], pane["y"] + handle[1]
    cx, cy = viewer.to_screen("sagittal", state["point"])
    radius, angle = math.hypot(hx - cx, hy - cy), math.atan2(hy - cy, hx - cx)
    turned = angle + math.radians(20)
    viewer.drag_until((hx, hy), (cx + radius * math.cos(turned), cy + radius * math.sin(turned)),
                      f"{MPR}.planes.axial.oblique")
    viewer.settled("axial", "coronal", extra=f"{MPR}.panes.axial.geometry.normal[1] !== 0")
    state = viewer.state()
    assert not state["planes"]["sagittal"]["oblique"]
    normal = state["panes"]["axial"]["geometry"]["normal"]
    assert normal[0] == pytest.approx(0, abs=1e-6)  # about the sagittal normal (x)
    assert angle_deg(normal, [0.0, 0.0, 1.0]) == pytest.approx(20, abs=4)
    viewer.page.mouse.move(*viewer.center_of("axial"))
    viewer.page.keyboard.press("r")  # reset by key
    viewer.settled("axial", "coronal", "sagittal", extra=f"!{MPR}.planes.axial.oblique")
    assert viewer.pane("axial")["geometry"]["normal"] == pytest.approx([0, 0, 1])


def test_3d_orbit_streams_interactive_then_final_frames(viewer: Mpr) -> None:
    before = viewer.pane("3d")
    x, y = viewer.center_of("3d")
    viewer.drag_until((x - 40, y), (x + 60, y + 20),
                      f"{MPR}.panes['3d'].interactiveFrames > {before['interactiveFrames']}")
    viewer.settled("3d", extra=f"{MPR}.panes['3d'].finalFrames > {before['finalFrames']}")
    after = viewer.pane("3d")
    camera = viewer.state()["camera"]
    assert camera["azimuth"] == pytest.approx(-50, abs=1e-6)  # 100 px at 0.5 degree per px
    assert camera["elevation"] == pytest.approx(10, abs=1e-6)
    assert after["interactiveFrames"] > before["interactiveFrames"]
    assert (after["width"], after["height"]) == (before["width"], before["height"])
    assert differs(after["signature"], before["signature"]) > 1.0
    indicator = viewer.page.inner_text("[data-testid=mpr-pane-3d] .mpr-indicator")
    assert f"{after['width']}×{after['height']}" in indicator and "ms" in indicator

    # ctrl-drag pans (mm, on the screen's axes), right-drag zooms
    viewer.drag_until((x, y), (x + 40, y + 30), f"{MPR}.camera.pan[0] !== 0", modifiers="Control")
    viewer.settled("3d", extra=f"{MPR}.camera.pan[0] < 0 && {MPR}.camera.pan[1] > 0")
    viewer.drag_until((x, y), (x, y - 60), f"{MPR}.camera.zoom > 1", button="right")
    viewer.settled("3d", extra=f"{MPR}.camera.zoom > 1.4")
    zoomed = viewer.pane("3d")
    assert zoomed["geometry"]["position"] != after["geometry"]["position"]
    assert differs(zoomed["signature"], after["signature"]) > 1.0


def test_3d_preset_and_clip_change_the_image(viewer: Mpr) -> None:
    bone = viewer.pane("3d")
    assert bone["geometry"]["preset"] == "ct-bone"
    presets = viewer.page.eval_on_selector_all(
        "[data-testid=mpr-bar] select[name=preset] option", "os => os.map(o => o.value)")
    assert set(presets) == {"ct-bone", "ct-soft-tissue", "ct-lung", "ct-angio", "ct-mip",
                            "mr-default"}
    assert presets[-1] == "mr-default"  # those meant for CT first
    viewer.page.select_option("[data-testid=mpr-bar] select[name=preset]", "ct-mip")
    viewer.settled("3d", extra=f"{MPR}.panes['3d'].geometry.preset === 'ct-mip'")
    mip = viewer.pane("3d")
    assert differs(mip["signature"], bone["signature"]) > 1.0

    viewer.page.click("[data-testid=mpr-clip] summary")
    viewer.page.fill("[data-testid=mpr-clip] input[name=clip-0]", "60")  # keep the left 40 %
    viewer.settled("3d", extra=f"{MPR}.camera.clip[0] === 0.6")
    clipped = viewer.pane("3d")
    assert differs(clipped["signature"], mip["signature"]) > 1.0
    assert clipped["nonBlack"] < mip["nonBlack"]
    viewer.page.click("[data-testid=mpr-clip] summary")

    viewer.page.click("[data-testid=mpr-bar] button[data-id=mpr-reset-3d]")
    viewer.settled("3d", extra=f"{MPR}.camera.clip[0] === 0 && {MPR}.camera.azimuth === 0")
    viewer.page.select_option("[data-testid=mpr-bar] select[name=preset]", "ct-bone")
    viewer.settled("3d", extra=f"{MPR}.panes['3d'].geometry.preset === 'ct-bone'")


def test_bone_stl_download(viewer: Mpr, tmp_path: Path) -> None:
    with viewer.page.expect_download(timeout=60_000) as info:
        viewer.page.click("[data-testid=mpr-stl]")
    path = tmp_path / "bone.stl"
    info.value.save_as(path)
    data = path.read_bytes()
    if data[:5] == b"solid" and b"facet" in data[:1000]:
        assert data.count(b"facet normal") > 100  # ASCII STL
    else:
        (count,) = struct.unpack_from("<I", data, 80)
        assert len(data) == 84 + 50 * count and count > 100
        triangles = np.frombuffer(data, np.dtype([("n", "<f4", 3), ("v", "<f4", (3, 3)),
                                                  ("a", "<u2")]), count, 84)["v"]
        extent = triangles.reshape(-1, 3).max(axis=0) - triangles.reshape(-1, 3).min(axis=0)
        assert (extent < ROWS * SPACING_MM + 1).all() and (extent > 20).all()


def test_url_restores_the_layout_and_esc_goes_back(viewer: Mpr, tmp_path: Path) -> None:
    state = viewer.state()
    x, y = viewer.to_screen("axial", list(np.add(state["point"], [-35.0, 25.0, 0.0])))
    viewer.page.mouse.click(x, y)
    viewer.settled("axial", "coronal", "sagittal")
    x, y = viewer.center_of("3d")
    viewer.drag((x, y), (x + 50, y - 24))
    viewer.page.mouse.wheel(0, -300)  # zoom in
    viewer.settled(*VIEWS, extra=f"{MPR}.camera.azimuth !== 0 && {MPR}.camera.zoom > 1.05")
    viewer.page.screenshot(path=str(tmp_path / "screenshot-mpr3d.png"))
    if os.environ.get("CONSILIUM_UPDATE_SCREENSHOT") == "1":
        target = ROOT / "docs" / "screenshot-mpr3d.png"
        target.parent.mkdir(exist_ok=True)
        shutil.copy(tmp_path / "screenshot-mpr3d.png", target)

    url = viewer.page.url
    assert "layout=mpr" in url
    viewer.page.reload()
    viewer.wait("window.__consilium && (__consilium.ready || __consilium.error)")
    viewer.settled(*VIEWS, timeout=60_000)
    assert viewer.page.url == url
    viewer.page.locator("[data-testid=mpr-pane-axial]").click()
    viewer.page.keyboard.press("Escape")
    viewer.wait(f"!{MPR}.active")
    assert "layout=mpr" not in viewer.page.url
    assert viewer.page.locator("[data-testid=mpr3d]").is_hidden()
    assert viewer.page.locator("[data-testid=viewport]").is_visible()


def test_a_single_slice_series_says_why(viewer: Mpr) -> None:
    viewer.open_study(patientId="MPR-002")
    viewer.page.click("[data-testid=toolbar] button[data-id=mpr3d]")
    viewer.wait(f"{MPR}.active && {MPR}.error !== null", timeout=30_000)
    message = viewer.page.inner_text("[data-testid=mpr-pane-axial] .mpr-message")
    assert "single slice" in message
    assert viewer.page.locator("[data-testid=mpr-pane-3d] .mpr-message").is_visible()
    viewer.page.keyboard.press("Escape")
    viewer.wait(f"!{MPR}.active")
