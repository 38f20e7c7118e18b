"""The web viewer in real Chromium (Debian's, WebGL through SwiftShader) against a real
``consilium serve``: log in, search (Cyrillic name, ID, dates, modality, accession), open a CT,
scroll, window presets, measurements checked against the phantom's geometry, view transforms,
and a colour multi-frame US, DX, PET and compressed files (JPEG baseline, JPEG-LS, JPEG 2000,
RLE) decoded by Cornerstone's codecs.

The page publishes its state on ``window.__consilium`` (frontend/src/core/hooks.ts); the tests
wait on it and never sleep. The built front end (``make frontend``) is required.

``CONSILIUM_UPDATE_SCREENSHOT=1`` also writes the README's docs/screenshot-viewer.png.
"""

from __future__ import annotations

import io
import math
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import Page
from pydicom.uid import UID, generate_uid

from consilium import synthetic
from consilium.synthetic import PatientSpec, StudySpec, write_ct_series
from tests.browser import chromium_context
from tests.conftest import CONFIG, CONSILIUM, ROOT, pydicom_data_dir
from tests.webserver import WebServer

DIST = ROOT / "frontend" / "dist" / "index.html"
TEST_FILES = pydicom_data_dir() / "test_files"
CT_SLICES = 60
CT_SPACING_MM = 0.7  # the phantom's PixelSpacing: 512 px = 358.4 mm
CT_FOV_MM = 512 * CT_SPACING_MM

# pydicom's corpus (no network: files of the installed package, never get_testdata_files)
US_COLOUR = "examples_ybr_color.dcm"  # US, YBR_FULL_422, JPEG baseline, 30 frames
JPEG_LS = "MR_small_jpeg_ls_lossless.dcm"  # MR 64x64, JPEG-LS lossless
JPEG_2000 = "693_J2KI.dcm"  # CT 512x512, JPEG 2000
RLE_COLOUR = "SC_rgb_rle.dcm"  # RGB 100x100, RLE lossless


def lung_voi() -> tuple[float, float]:
    """Cornerstone's linear VOI of W 1500 / L -600 (PS3.3 C.11.2.1.2.1)."""
    width, center = 1500, -600
    return center - 0.5 - (width - 1) / 2, center - 0.5 + (width - 1) / 2


def shown_number(value: float) -> str:
    """How Cornerstone prints a measurement (core utilities.roundNumber, precision 2)."""
    magnitude = abs(value)
    decimals = 0 if magnitude >= 100 else 1 if magnitude >= 10 else 2
    return f"{value:.{decimals}f}"


def other_modality(modality: str, path: Path, **extra: Any) -> Path:
    """A small single-frame image of another modality (DX MONOCHROME1, PT with rescale)."""
    rows = cols = 256
    yy, xx = np.mgrid[0:rows, 0:cols]
    blob = np.exp(-(((xx - 128) ** 2 + (yy - 110) ** 2) / (2 * 40.0**2)))
    pixels = (200 + 3000 * blob + 40 * np.sin(xx / 9)).astype(np.uint16)
    sop_class = UID({"DX": "1.2.840.10008.5.1.4.1.1.1.1",  # Digital X-Ray, for presentation
                     "PT": "1.2.840.10008.5.1.4.1.1.128"}[modality])
    ds = synthetic.image(
        sop_class, modality=modality, rows=rows, columns=cols,
        pixels=np.clip(pixels, 0, 4095).astype(np.uint16).tobytes(),
        FrameOfReferenceUID=generate_uid(), PatientName=f"Synthetic^{modality}",
        PatientID=f"SYN-{modality}", StudyDate="20230110", StudyTime="090000", StudyID="1",
        AccessionNumber="", SeriesNumber=1, InstanceNumber=1, BitsStored=12, HighBit=11,
        **extra)
    return synthetic.write(ds, path)


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebServer]:
    if not DIST.is_file():
        pytest.fail("the front end is not built: run `make frontend`")
    base = tmp_path_factory.mktemp("viewer")
    study = StudySpec(PatientSpec("P100", "Иванов^Иван", "19600101", "M"), "20240315",
                      accession="ACC100")
    write_ct_series(study, base / "ct", slices=CT_SLICES, uid_seed="viewer-test")
    others = base / "others"
    others.mkdir()
    for name in (US_COLOUR, JPEG_LS, JPEG_2000, RLE_COLOUR):
        shutil.copy(TEST_FILES / name, others / name)
    other_modality("DX", others / "dx.dcm", PhotometricInterpretation="MONOCHROME1",
                   ImagerPixelSpacing=[0.15, 0.15], PixelSpacing=[0.15, 0.15])
    other_modality("PT", others / "pt.dcm", RescaleSlope=0.5, RescaleIntercept=0,
                   Units="BQML", PixelSpacing=[4.0, 4.0], ImagePositionPatient=[0, 0, 0],
                   ImageOrientationPatient=[1, 0, 0, 0, 1, 0])
    data_dir = base / "var"
    subprocess.run([str(CONSILIUM), "import", "--config", str(CONFIG), "--data-dir",
                    str(data_dir), "--institution", "city-hospital", "--quiet",
                    str(base / "ct"), str(others)], check=True, capture_output=True)
    server = WebServer(data_dir).start()
    yield server
    server.stop()


@dataclass
class Box:
    left: float
    top: float
    width: float
    height: float

    @property
    def cx(self) -> float:
        return self.left + self.width / 2

    @property
    def cy(self) -> float:
        return self.top + self.height / 2


class Viewer:
    """Page object of /viewer: what a user does, and the state the page publishes."""

    def __init__(self, page: Page, web: WebServer) -> None:
        self.page = page
        self.web = web
        self.errors: list[str] = []
        page.on("pageerror", lambda e: self.errors.append(str(e)))

    def login(self, username: str = "petrov") -> None:
        page = self.page
        page.goto(self.web.url + "/viewer")
        page.click("a.provider")
        page.wait_for_url("**/dev-idp/authorize?**")
        page.fill("input[name=username]", username)
        page.fill("input[name=password]", "demo")
        page.click("button[type=submit]")
        page.wait_for_url(self.web.url + "/viewer")
        page.wait_for_function("window.__consilium && (__consilium.ready || __consilium.error)")
        assert self.hook("error") is None

    def hook(self, name: str) -> Any:
        return self.page.evaluate(f"window.__consilium.{name}")

    @property
    def view(self) -> dict[str, Any]:
        view = self.hook("view")
        assert view is not None
        return dict(view)

    def search(self, **fields: str) -> list[str]:
        page = self.page
        if page.evaluate("document.body.classList.contains('browser-collapsed')"):
            page.click("header button.toggle")
        for name in ("patientName", "patientId", "dateFrom", "dateTo", "accession"):
            page.fill(f"[data-testid=study-search] [name={name}]", fields.get(name, ""))
        page.select_option("[data-testid=study-search] [name=modality]", fields.get("modality", ""))
        page.click("[data-testid=study-search] button[type=submit]")
        page.wait_for_function(
            "!document.querySelector('[data-testid=study-status]').textContent.startsWith('Search')")
        return [row.inner_text() for row in page.locator("[data-testid=studies] tbody tr").all()]

    def open_study(self, **fields: str) -> dict[str, Any]:
        rows = self.search(**fields)
        assert len(rows) == 1, rows
        self.page.locator("[data-testid=studies] tbody tr").first.click()
        self.page.wait_for_function("__consilium.firstImageMs !== null", timeout=30_000)
        return self.view

    def wait(self, condition: str, timeout: float = 15_000) -> None:
        self.page.wait_for_function(condition, timeout=timeout)

    def wait_index(self, index: int) -> None:
        self.wait(f"__consilium.imageIndex === {index}")

    def press(self, key: str) -> None:
        self.page.locator("[data-testid=viewport]").hover()
        self.page.keyboard.press(key)

    def viewport_box(self) -> Box:
        box = self.page.locator("[data-testid=viewport]").bounding_box()
        assert box is not None
        return Box(box["x"], box["y"], box["width"], box["height"])

    def screenshot(self) -> np.ndarray:
        png = self.page.locator("[data-testid=viewport] canvas").first.screenshot()
        return np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(np.int32)

    def image_box(self) -> Box:
        """Where the CT's 512x512 pixels are on the page, found on the screen: inverted, the
        air around the body is white and the viewport's background stays black."""
        renders = self.view["renderCount"]
        self.press("i")
        self.wait(f"__consilium.view.invert && __consilium.view.renderCount > {renders}")
        # the text over the image (corners, orientation letters) is not the image
        self.page.eval_on_selector("[data-testid=viewport] ~ .overlay",
                                   "o => o.style.visibility = 'hidden'")
        pixels = self.screenshot().sum(axis=2)
        self.page.eval_on_selector("[data-testid=viewport] ~ .overlay",
                                   "o => o.style.visibility = ''")
        self.press("i")
        self.wait("!__consilium.view.invert")
        vp = self.viewport_box()
        row = pixels[int(vp.height / 2)]
        column = pixels[:, int(vp.width / 2)]
        xs = np.flatnonzero(row > 100)
        ys = np.flatnonzero(column > 100)
        return Box(vp.left + xs[0], vp.top + ys[0], xs[-1] - xs[0] + 1, ys[-1] - ys[0] + 1)

    def drag(self, start: tuple[float, float], end: tuple[float, float],
             button: str = "left") -> None:
        mouse = self.page.mouse
        mouse.move(*start)
        mouse.down(button=button)  # type: ignore[arg-type]
        mouse.move(*end, steps=12)
        mouse.up(button=button)  # type: ignore[arg-type]

    def measure(self, tool_key: str, action: Any) -> dict[str, Any]:
        before = len(self.hook("measurements"))
        self.press(tool_key)
        action()
        # settled: Cornerstone's throttled statistics have caught up with the last mouse move
        self.wait(f"__consilium.measurements.length > {before} && __consilium.lastMeasurement"
                  " && __consilium.lastMeasurement.settled")
        return dict(self.hook("lastMeasurement"))

    def svg_texts(self) -> list[str]:
        """The lines of text Cornerstone draws over the image (one tspan per line)."""
        return list(self.page.evaluate("""() => [...document.querySelectorAll(
            '[data-testid=viewport] svg text')].flatMap((t) => {
                const spans = t.querySelectorAll('tspan');
                return (spans.length ? [...spans] : [t]).map((e) => e.textContent.trim());
            })"""))


@pytest.fixture(scope="module")
def viewer(web: WebServer) -> Iterator[Viewer]:
    with chromium_context() as context:
        v = Viewer(context.new_page(), web)
        v.login()
        yield v
        assert v.errors == []


def test_cornerstone_renders_with_webgl(viewer: Viewer) -> None:
    rendering = viewer.hook("rendering")
    assert viewer.hook("renderingEngineIsGPU") is True
    assert rendering["gpu"] is True and rendering["backend"] == "gpu"
    assert rendering["webgl2"] is True
    assert "SwiftShader" in rendering["renderer"]  # headless: WebGL without a GPU


def test_search_by_name_id_dates_modality_accession(viewer: Viewer) -> None:
    assert "Иванов Иван" in viewer.search(patientName="иван")[0]  # Cyrillic, any case, prefix
    assert len(viewer.search(patientName="иван")) == 1
    assert len(viewer.search(patientName="ИВАНОВ И")) == 1
    assert viewer.search(patientName="Петров") == []
    assert "P100" in viewer.search(patientId="P100")[0]
    rows = viewer.search(dateFrom="2024-03-01", dateTo="2024-03-31")
    assert len(rows) == 1 and "15/03/2024" in rows[0]  # DICOM 20240315, as a date in English
    assert len(viewer.search(modality="CT")) == 2  # the phantom and the JPEG 2000 head CT
    assert "PLA" in viewer.search(modality="US")[0]
    assert len(viewer.search(accession="ACC100")) == 1
    assert len(viewer.search()) == 7


def test_open_ct_scroll_and_presets(viewer: Viewer) -> None:
    view = viewer.open_study(patientId="P100")
    assert (view["modality"], view["imageCount"], view["imageIndex"]) == ("CT", CT_SLICES, 0)
    assert (view["rows"], view["columns"]) == (512, 512)
    assert view["pixelSpacing"] == [CT_SPACING_MM, CT_SPACING_MM]
    assert view["viewportUsesCPU"] is False
    assert viewer.hook("firstImageMs") > 0
    # the slices stream in behind the first one
    viewer.wait(f"__consilium.view.loadedCount === {CT_SLICES}", timeout=60_000)

    for _ in range(5):
        viewer.press("ArrowDown")
    viewer.wait_index(5)
    viewer.press("PageDown")
    viewer.wait_index(15)
    viewer.page.mouse.wheel(0, 120)
    viewer.wait_index(16)
    viewer.press("ArrowUp")
    viewer.wait_index(15)
    viewer.press("End")
    viewer.wait_index(CT_SLICES - 1)
    viewer.press("PageUp")
    viewer.wait_index(CT_SLICES - 11)
    viewer.press("Home")
    viewer.wait_index(0)
    for _ in range(3):
        viewer.press("ArrowDown")
    viewer.wait_index(3)
    # slice 4 is the instance numbered 4 (reading order = InstanceNumber)
    assert "Im 4 / 60" in viewer.page.inner_text("[data-testid=slice-info]")

    viewer.press("2")  # lung
    viewer.wait("__consilium.view.windowWidth === 1500")
    lower, upper = lung_voi()
    assert viewer.view["voi"] == {"lower": lower, "upper": upper}
    assert viewer.view["windowCenter"] == -600
    assert "W 1500 L -600" in viewer.page.inner_text("[data-testid=window-info]")
    viewer.press("1")  # brain 80/40
    viewer.wait("__consilium.view.windowWidth === 80 && __consilium.view.windowCenter === 40")
    viewer.press("5")  # mediastinum 350/50
    viewer.wait("__consilium.view.windowWidth === 350 && __consilium.view.windowCenter === 50")
    viewer.page.click("[data-testid=toolbar] button[data-id=preset-3]")  # bone 1800/400
    viewer.wait("__consilium.view.windowWidth === 1800 && __consilium.view.windowCenter === 400")
    viewer.press("4")  # abdomen 400/40
    viewer.wait("__consilium.view.windowWidth === 400 && __consilium.view.windowCenter === 40")

    # window/level by dragging with the left button (the default tool)
    vp = viewer.viewport_box()
    viewer.drag((vp.cx, vp.cy), (vp.cx + 60, vp.cy + 40))
    viewer.wait("__consilium.view.windowWidth !== 400 || __consilium.view.windowCenter !== 40")


def test_length_in_millimetres_matches_the_geometry(viewer: Viewer, tmp_path: Path) -> None:
    if viewer.hook("view") is None or viewer.view["imageCount"] != CT_SLICES:
        viewer.open_study(patientId="P100")
    viewer.press("Escape")  # reset: fitted, unrotated
    viewer.wait("__consilium.view.rotation === 0 && !__consilium.view.flipHorizontal")
    viewer.press("PageDown")
    viewer.press("PageDown")
    viewer.press("PageDown")
    viewer.wait("__consilium.imageIndex >= 30")
    viewer.press("2")
    image = viewer.image_box()
    assert abs(image.width - image.height) <= 1  # square pixels, square image
    mm_per_px = CT_FOV_MM / image.width

    y = image.top + image.height * 0.42
    x0 = image.left + image.width * 0.22
    length_px = image.width * 0.56
    m = viewer.measure("l", lambda: viewer.drag((x0, y), (x0 + length_px, y)))
    assert m["tool"] == "Length" and m["unit"] == "mm"
    # what the screen shows, in millimetres of the phantom: 358.4 mm across 512 pixels
    assert m["length"] == pytest.approx(length_px * mm_per_px, rel=0.01)
    # and exactly the pixel spacing times the distance in pixels between its two ends
    (c0, r0), (c1, r1) = m["handlesImage"]
    assert m["length"] == pytest.approx(math.hypot(c1 - c0, r1 - r0) * CT_SPACING_MM, rel=1e-6)
    shown = [t for t in viewer.svg_texts() if t.endswith("mm")]
    assert f"{shown_number(m['length'])} mm" in shown, shown
    assert m["text"] == [f"{shown_number(m['length'])} mm"]
    assert "Length" in viewer.page.inner_text("[data-testid=measurements]")

    # an ellipse (drawn from its centre) in the air outside the body: about -1000 HU
    def ellipse() -> None:
        viewer.drag((image.left + image.width * 0.09, image.top + image.height * 0.09),
                    (image.left + image.width * 0.15, image.top + image.height * 0.14))

    roi = viewer.measure("e", ellipse)
    assert roi["tool"] == "EllipticalROI" and roi["modalityUnit"] == "HU"
    assert -1030 < roi["mean"] < -950 and 0 <= roi["stdDev"] < 40
    assert any("HU" in line for line in roi["text"])
    assert roi["area"] > 0

    # and one in the heart: blood, 42 HU in the phantom, with its noise
    def heart() -> None:
        viewer.drag((image.left + image.width * 0.55, image.top + image.height * 0.45),
                    (image.left + image.width * 0.59, image.top + image.height * 0.48))

    roi = viewer.measure("e", heart)
    assert 25 < roi["mean"] < 60 and roi["stdDev"] < 25, roi
    viewer.press("w")

    viewer.page.screenshot(path=str(tmp_path / "screenshot-viewer.png"))
    if os.environ.get("CONSILIUM_UPDATE_SCREENSHOT") == "1":
        target = ROOT / "docs" / "screenshot-viewer.png"
        target.parent.mkdir(exist_ok=True)
        shutil.copy(tmp_path / "screenshot-viewer.png", target)


def test_angle_rectangle_and_arrow(viewer: Viewer) -> None:
    if viewer.hook("view") is None or viewer.view["imageCount"] != CT_SLICES:
        viewer.open_study(patientId="P100")
    image = viewer.image_box()
    cx, cy = image.cx, image.cy

    def angle() -> None:
        viewer.drag((cx - 120, cy + 60), (cx, cy + 60))
        viewer.page.mouse.click(cx, cy - 60)

    m = viewer.measure("a", angle)
    assert m["tool"] == "Angle" and m["angle"] == pytest.approx(90, abs=1)

    def rectangle() -> None:
        viewer.drag((image.left + image.width * 0.86, image.top + image.height * 0.03),
                    (image.left + image.width * 0.97, image.top + image.height * 0.12))

    m = viewer.measure("r", rectangle)
    assert m["tool"] == "RectangleROI" and m["modalityUnit"] == "HU"
    assert -1030 < m["mean"] < -950 and 0 <= m["stdDev"] < 40

    def arrow() -> None:
        viewer.drag((cx + 150, cy - 150), (cx + 40, cy - 40))
        viewer.page.fill("[data-testid=text-prompt] input", "Трахея")
        viewer.page.click("[data-testid=text-prompt] button[type=submit]")

    m = viewer.measure("t", arrow)
    assert m["tool"] == "ArrowAnnotate" and m["text"] == ["Трахея"]
    assert "Трахея" in viewer.svg_texts()
    viewer.press("w")


def test_zoom_pan_flip_rotate_reset(viewer: Viewer) -> None:
    if viewer.hook("view") is None or viewer.view["imageCount"] != CT_SLICES:
        viewer.open_study(patientId="P100")
    viewer.press("Escape")
    viewer.wait("__consilium.view.rotation === 0")
    start = viewer.view
    vp = viewer.viewport_box()
    x = vp.left + 60  # beside the image: no annotation to catch the mouse there
    viewer.drag((x, vp.cy), (x, vp.cy + 120), button="right")  # zoom
    viewer.wait(f"__consilium.view.zoom > {start['zoom'] * 1.2}")
    viewer.drag((x, vp.cy), (x + 80, vp.cy + 30), button="middle")  # pan
    viewer.wait("Math.abs(__consilium.view.pan[0]) > 10")
    viewer.press("h")
    viewer.wait("__consilium.view.flipHorizontal === true")
    viewer.press("v")
    viewer.wait("__consilium.view.flipVertical === true")
    viewer.press("o")
    viewer.wait("__consilium.view.rotation === 90")
    viewer.page.click("[data-testid=toolbar] button[data-id=rotate]")
    viewer.wait("__consilium.view.rotation === 180")
    viewer.page.click("[data-testid=toolbar] button[data-id=reset]")
    viewer.wait("__consilium.view.rotation === 0 && !__consilium.view.flipHorizontal"
                " && !__consilium.view.flipVertical")
    view = viewer.view
    assert view["zoom"] == pytest.approx(start["zoom"], rel=1e-6)
    assert view["pan"] == pytest.approx([0, 0], abs=1e-6)


def painted(viewer: Viewer) -> dict[str, float]:
    stats = viewer.page.evaluate("__consilium.canvasStats()")
    assert stats is not None
    return dict(stats)


def shown_image(viewer: Viewer) -> np.ndarray:
    """The image as the screen shows it, cropped where the page says its pixels are."""
    left, top, width, height = viewer.view["imageRect"]
    pixels = viewer.screenshot()
    crop = pixels[round(top):round(top + height), round(left):round(left + width)]
    return crop.astype(np.uint8)


def reference_rgb(name: str, frame: int = 0) -> np.ndarray:
    """The frame as pydicom decodes it (RGB; YCbCr converted)."""
    import warnings

    from pydicom import dcmread

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        arr = dcmread(TEST_FILES / name).pixel_array
    return np.asarray(arr[frame] if arr.ndim == 4 else arr)


def difference(viewer: Viewer, reference: np.ndarray) -> float:
    """Mean absolute difference (0-255) between the screen and a reference RGB frame."""
    shown = Image.fromarray(shown_image(viewer)).resize(
        (reference.shape[1], reference.shape[0]), Image.Resampling.BILINEAR)
    return float(np.abs(np.asarray(shown).astype(np.int32) - reference.astype(np.int32)).mean())


def test_colour_multiframe_ultrasound(viewer: Viewer) -> None:
    view = viewer.open_study(patientId="204")
    assert view["modality"] == "US" and view["color"] is True
    assert (view["rows"], view["columns"], view["imageCount"]) == (240, 320, 30)
    # the picture on screen is the decoded frame, colours included (YBR_FULL_422 -> RGB;
    # measured here: 0.8 of 255 on average, interpolation and JPEG decoders apart)
    assert difference(viewer, reference_rgb(US_COLOUR, 0)) < 1.5
    shown = shown_image(viewer).astype(np.int32)
    assert ((shown.max(axis=2) - shown.min(axis=2)) > 60).any()  # the coloured icons
    viewer.press("ArrowDown")
    viewer.wait_index(1)  # the next frame of the multi-frame instance
    assert viewer.view["imageId"].endswith("/frames/2")
    viewer.press("End")
    viewer.wait_index(29)
    viewer.wait("__consilium.view.imageId.endsWith('/frames/30')")
    # the last frame differs from the first by 4.7 on average: the screen shows the last
    last, first = reference_rgb(US_COLOUR, 29), reference_rgb(US_COLOUR, 0)
    assert difference(viewer, last) < 1.5 < difference(viewer, first)


@pytest.mark.parametrize(
    ("patient_id", "modality", "size", "color"),
    [
        ("4MR1", "MR", (64, 64), False),  # JPEG-LS lossless
        ("CQ500-CT-310", "CT", (512, 512), False),  # JPEG 2000
        ("ID1", "OT", (100, 100), True),  # RLE, RGB: compared with pydicom's decoding
        ("SYN-DX", "DX", (256, 256), False),  # MONOCHROME1
        ("SYN-PT", "PT", (256, 256), False),  # rescaled PET
    ],
)
def test_other_modalities_and_codecs(viewer: Viewer, patient_id: str, modality: str,
                                     size: tuple[int, int], color: bool) -> None:
    view = viewer.open_study(patientId=patient_id)
    assert view["modality"] == modality
    assert (view["rows"], view["columns"]) == size and view["color"] is color
    assert view["viewportUsesCPU"] is False
    stats = painted(viewer)
    assert stats["nonBlack"] > 0.02, stats
    if color:  # sharp colour bars, blurred at their edges by the display's interpolation
        assert difference(viewer, reference_rgb(RLE_COLOUR)) < 8  # wrong colours: > 50
    status = viewer.page.inner_text("[data-testid=viewer-status]")
    assert not re.search("cannot", status, re.I), status


def test_viewer_pages_assets_and_login_redirect(web: WebServer) -> None:
    anonymous = web.client()
    answer = anonymous.get("/viewer/studies/1.2.3?series=4.5")
    assert answer.status_code == 303
    back = "/viewer/studies/1.2.3%3Fseries%3D4.5"
    assert answer.headers["location"] == f"/auth/login?return_to={back}"
    client = web.login("petrov", return_to="/viewer")
    for path in ("/viewer", "/viewer/", "/viewer/studies/1.2.3"):
        page = client.get(path)
        assert page.status_code == 200 and page.headers["cache-control"] == "no-cache"
        assert page.headers["content-type"].startswith("text/html")
    script = re.search(r'src="(/viewer/assets/[^"]+\.js)"', page.text)
    assert script is not None
    asset = anonymous.get(script.group(1))  # hashed files are not patient data
    assert asset.status_code == 200
    assert asset.headers["cache-control"] == "public, max-age=31536000, immutable"
    wasm = next((ROOT / "frontend" / "dist" / "assets").glob("*.wasm"))
    answer = anonymous.get(f"/viewer/assets/{wasm.name}")
    assert answer.headers["content-type"] == "application/wasm"
    assert anonymous.get("/viewer/assets/nothing.js").status_code == 404
    assert anonymous.get("/viewer/assets/..%2F..%2Findex.html").status_code == 404


def test_viewer_says_how_to_build_when_not_built(tmp_path: Path) -> None:
    import anyio
    import httpx
    from starlette.applications import Starlette

    from consilium.web_static import viewer_routes

    async def get() -> httpx.Response:
        app = Starlette(routes=viewer_routes(tmp_path / "dist"))
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://viewer") as client:
            return await client.get("/viewer/studies/1.2.3")

    # in a thread of its own: Playwright's sync API keeps an event loop in this one
    with ThreadPoolExecutor(1) as pool:
        answer = pool.submit(anyio.run, get).result()
    assert answer.status_code == 503 and "make frontend" in answer.text
