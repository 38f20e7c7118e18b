"""Volume rendering: presets against reviewed reference images, anatomy on the right side of the
screen, clipping, cameras, adaptive quality, frame encoding.

Reference images live in tests/rendering_refs/. They were generated once with
``CONSILIUM_UPDATE_RENDER_REFS=1 pytest tests/test_rendering_volume_render.py`` and reviewed by
eye; a rendering differing from its reference by more than 2.5 grey levels on average fails.
Regenerate only after reviewing that the new images are right.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from consilium_rendering import (
    PRESETS,
    ClipBox,
    ClipPlane,
    EncodeError,
    ExplicitCamera,
    ImageFormat,
    MapperKind,
    OrbitCamera,
    Preset,
    Quality,
    RenderError,
    RenderRequest,
    StartView,
    Volume,
    VolumeRenderer,
    apply_window,
    build_volume,
    encode_frame,
    get_preset,
)
from consilium_rendering.camera import resolve_camera
from consilium_rendering.geometry import rotation_matrix
from consilium_rendering.phantom import (
    Cylinder,
    Ellipsoid,
    PhantomGeometry,
    Shape,
    Sphere,
    phantom_series,
)

REFS = Path(__file__).parent / "rendering_refs"
UPDATE = os.environ.get("CONSILIUM_UPDATE_RENDER_REFS") == "1"
TOLERANCE = 2.5  # mean absolute difference, grey levels (0-255), over all channels
SIZE = (128, 128)

GRID = PhantomGeometry(
    rows=64, columns=64, slices=64, row_spacing=3.0, column_spacing=3.0, slice_spacing=3.0,
    origin=(-94.5, -94.5, -94.5),
)
# A crude chest: body, two lungs, spine, a contrast-filled aorta, a dense bone ball.
CT_SCENE: list[Shape] = [
    Ellipsoid((0.0, 0.0, 0.0), (80.0, 60.0, 85.0), 40.0),
    Ellipsoid((-35.0, 0.0, 10.0), (28.0, 35.0, 50.0), -850.0),
    Ellipsoid((35.0, 0.0, 10.0), (28.0, 35.0, 50.0), -850.0),
    Cylinder((0.0, 40.0, -90.0), (0.0, 40.0, 90.0), 12.0, 700.0),
    Cylinder((0.0, -10.0, -80.0), (0.0, -10.0, 60.0), 8.0, 350.0),
    Sphere((40.0, -30.0, -40.0), 14.0, 1200.0),
]
MR_SCENE = [
    Ellipsoid((0.0, 0.0, 0.0), (70.0, 80.0, 75.0), 300.0),
    Ellipsoid((0.0, 0.0, 10.0), (50.0, 60.0, 45.0), 650.0),
    Sphere((20.0, -20.0, 20.0), 15.0, 1000.0),
]
VIEW = OrbitCamera(azimuth=30.0, elevation=15.0, zoom=1.6)


@pytest.fixture(scope="module")
def ct() -> Volume:
    return build_volume(phantom_series(GRID, CT_SCENE))


@pytest.fixture(scope="module")
def renderer(ct: Volume) -> Iterator[VolumeRenderer]:
    renderer = VolumeRenderer(ct)
    yield renderer
    renderer.close()


@pytest.fixture(scope="module")
def mr_renderer() -> Iterator[VolumeRenderer]:
    volume = build_volume(phantom_series(GRID, MR_SCENE, background=0.0, intercept=0.0,
                                         modality="MR"))
    renderer = VolumeRenderer(volume)
    yield renderer
    renderer.close()


def _compare(name: str, pixels: np.ndarray) -> None:
    path = REFS / f"{name}.png"
    if UPDATE:
        REFS.mkdir(exist_ok=True)
        path.write_bytes(encode_frame(pixels, ImageFormat.PNG))
        pytest.fail(f"reference {path.name} written: review it, then run without the variable")
    assert path.exists(), f"no reference {path}; generate with CONSILIUM_UPDATE_RENDER_REFS=1"
    reference = np.asarray(Image.open(path).convert("RGB"))
    assert reference.shape == pixels.shape
    difference = np.abs(reference.astype(np.int16) - pixels.astype(np.int16))
    assert difference.mean() < TOLERANCE, f"{name}: mean difference {difference.mean():.2f}"


# --------------------------------------------------------------------------- presets


@pytest.mark.parametrize("preset", [p for p in PRESETS if PRESETS[p].modality == "CT"])
def test_ct_presets_match_their_references(renderer: VolumeRenderer, preset: str) -> None:
    frame = renderer.render(RenderRequest(preset=preset, camera=VIEW, size=SIZE))
    assert frame.size == SIZE and frame.pixels.dtype == np.uint8
    assert frame.pixels.any()
    _compare(preset, frame.pixels)


def test_mr_preset_matches_its_reference(mr_renderer: VolumeRenderer) -> None:
    frame = mr_renderer.render(RenderRequest(preset="mr-default", camera=VIEW, size=SIZE))
    _compare("mr-default", frame.pixels)


def test_clipped_reference(renderer: VolumeRenderer) -> None:
    request = RenderRequest(preset="ct-bone", camera=VIEW, size=SIZE,
                            clip_box=ClipBox((-100.0, -100.0, -100.0), (100.0, 100.0, 0.0)))
    _compare("ct-bone-clipped", renderer.render(request).pixels)


def test_same_request_same_frame(renderer: VolumeRenderer) -> None:
    request = RenderRequest(preset="ct-angio", camera=VIEW, size=SIZE)
    first = renderer.render(request).pixels
    renderer.render(RenderRequest(preset="ct-lung", size=(64, 48)))
    np.testing.assert_array_equal(renderer.render(request).pixels, first)


def test_shift_moves_the_transfer_function(renderer: VolumeRenderer) -> None:
    plain = renderer.render(RenderRequest(preset="ct-bone", camera=VIEW, size=SIZE)).pixels
    # Shifting bone up past the dense ball's 1200 HU leaves almost nothing to see.
    shifted = renderer.render(
        RenderRequest(preset="ct-bone", camera=VIEW, size=SIZE, shift=1200.0)
    ).pixels
    assert (shifted > 10).sum() < 0.2 * (plain > 10).sum()


# --------------------------------------------------------------------------- anatomy on screen


@pytest.fixture(scope="module")
def markers() -> Iterator[VolumeRenderer]:
    """Three dense balls: patient left (+x), anterior (-y) and superior (+z)."""
    scene = [
        Sphere((45.0, 0.0, 0.0), 10.0, 1000.0),
        Sphere((0.0, -45.0, 0.0), 8.0, 1000.0),
        Sphere((0.0, 0.0, 45.0), 6.0, 1000.0),
    ]
    renderer = VolumeRenderer(build_volume(phantom_series(GRID, scene)))
    yield renderer
    renderer.close()


def _blob(pixels: np.ndarray) -> tuple[float, float]:
    grey = pixels.astype(np.float64).sum(axis=2)
    ys, xs = np.nonzero(grey > 30)
    return float(xs.mean()), float(ys.mean())


def _marker_at(renderer: VolumeRenderer, camera: OrbitCamera, clip: ClipBox) -> tuple[float, float]:
    frame = renderer.render(RenderRequest(preset="ct-mip", camera=camera, size=SIZE,
                                          clip_box=clip))
    return _blob(frame.pixels)


LEFT = ClipBox((30.0, -20.0, -20.0), (60.0, 20.0, 20.0))
FRONT = ClipBox((-20.0, -60.0, -20.0), (20.0, -30.0, 20.0))
TOP = ClipBox((-20.0, -20.0, 30.0), (20.0, 20.0, 60.0))


def test_anterior_view_shows_patient_left_on_the_right(markers: VolumeRenderer) -> None:
    camera = OrbitCamera(parallel=True)
    x, _ = _marker_at(markers, camera, LEFT)
    assert x > SIZE[0] / 2 + 10
    _, y = _marker_at(markers, camera, TOP)
    assert y < SIZE[1] / 2 - 10  # head up


def test_posterior_and_side_views(markers: VolumeRenderer) -> None:
    x, _ = _marker_at(markers, OrbitCamera(start=StartView.POSTERIOR, parallel=True), LEFT)
    assert x < SIZE[0] / 2 - 10
    # Azimuth +90 from anterior looks from the patient's left: anterior is on screen left.
    x, _ = _marker_at(markers, OrbitCamera(azimuth=90.0, parallel=True), FRONT)
    assert x < SIZE[0] / 2 - 10
    # Elevation +90 looks down from above: the superior ball sits in the middle.
    x, y = _marker_at(markers, OrbitCamera(elevation=90.0, parallel=True), TOP)
    assert abs(x - SIZE[0] / 2) < 3 and abs(y - SIZE[1] / 2) < 3


def test_zoom_and_pan(markers: VolumeRenderer) -> None:
    x1, _ = _marker_at(markers, OrbitCamera(parallel=True), LEFT)
    x2, _ = _marker_at(markers, OrbitCamera(parallel=True, zoom=2.0), LEFT)
    assert x2 - SIZE[0] / 2 == pytest.approx(2 * (x1 - SIZE[0] / 2), abs=2)
    x3, _ = _marker_at(markers, OrbitCamera(parallel=True, pan=(45.0, 0.0)), LEFT)
    assert x3 == pytest.approx(SIZE[0] / 2, abs=2)  # panned onto the ball


def test_tilted_acquisition_renders_in_place() -> None:
    """A gantry-tilted series (sheared affine) shows the ball where an untilted one does."""
    ball = [Sphere((10.0, -5.0, 8.0), 12.0, 1000.0)]
    turn = rotation_matrix((1.0, 0.0, 0.0), 20.0)
    tilted = PhantomGeometry(
        rows=64, columns=64, slices=64, row_spacing=3.0, column_spacing=3.0, slice_spacing=3.0,
        origin=(-94.5, -90.0, -94.5), row_cosine=(1.0, 0.0, 0.0),
        column_cosine=tuple(float(v) for v in turn[:, 1]),  # type: ignore[arg-type]
        slice_direction=(0.0, 0.0, 1.0),
    )
    camera = ExplicitCamera((0.0, -600.0, 0.0), (0.0, 0.0, 0.0), (0.0, 0.0, 1.0),
                            parallel_scale=100.0)
    spots = []
    for geometry in (GRID, tilted):
        volume = build_volume(phantom_series(geometry, ball))
        renderer = VolumeRenderer(volume)
        spots.append(_blob(renderer.render(
            RenderRequest(preset="ct-mip", camera=camera, size=SIZE)).pixels))
        renderer.close()
    assert volume.report.tilt_deg == pytest.approx(20.0)
    assert np.hypot(spots[0][0] - spots[1][0], spots[0][1] - spots[1][1]) < 1.0
    # 10 mm left of centre at 200 mm across 128 pixels; 8 mm up.
    assert spots[0][0] == pytest.approx(63.5 + 10 * 128 / 200, abs=1.0)
    assert spots[0][1] == pytest.approx(63.5 - 8 * 128 / 200, abs=1.0)


# --------------------------------------------------------------------------- clipping


def test_clip_plane_removes_its_half(renderer: VolumeRenderer) -> None:
    camera = OrbitCamera(parallel=True, zoom=1.5)
    whole = renderer.render(RenderRequest(preset="ct-soft-tissue", camera=camera, size=SIZE))
    # Keep the patient's right (x < 0): the screen's left half in an anterior view.
    clipped = renderer.render(RenderRequest(
        preset="ct-soft-tissue", camera=camera, size=SIZE,
        clip_planes=(ClipPlane((0.0, 0.0, 0.0), (-1.0, 0.0, 0.0)),)))
    middle = SIZE[0] // 2
    assert whole.pixels[:, middle + 2 :].any()
    assert not clipped.pixels[:, middle + 1 :].any()
    assert clipped.pixels[:, : middle - 2].any()
    np.testing.assert_array_equal(clipped.pixels[:, :10], whole.pixels[:, :10])


def test_clip_box_keeps_its_inside(renderer: VolumeRenderer) -> None:
    camera = OrbitCamera(parallel=True, zoom=1.5)
    box = ClipBox((-100.0, -100.0, 0.0), (100.0, 100.0, 100.0))  # the upper half
    pixels = renderer.render(RenderRequest(preset="ct-bone", camera=camera, size=SIZE,
                                           clip_box=box)).pixels
    assert pixels[: SIZE[1] // 2 - 2].any()
    assert not pixels[SIZE[1] // 2 + 1 :].any()


def test_bad_clip_box(renderer: VolumeRenderer) -> None:
    with pytest.raises(RenderError, match="below"):
        renderer.render(RenderRequest(clip_box=ClipBox((0.0, 0.0, 0.0), (0.0, 1.0, 1.0))))
    with pytest.raises(RenderError, match="zero"):
        renderer.render(RenderRequest(clip_planes=(ClipPlane((0.0, 0.0, 0.0),
                                                             (0.0, 0.0, 0.0)),)))


# --------------------------------------------------------------------------- quality


def test_interactive_frames_are_smaller_and_coarser(renderer: VolumeRenderer) -> None:
    final = renderer.render(RenderRequest(preset="ct-bone", camera=VIEW, size=(200, 120)))
    quick = renderer.render(RenderRequest(preset="ct-bone", camera=VIEW, size=(200, 120),
                                          quality=Quality.INTERACTIVE))
    assert final.size == (200, 120) and quick.size == (100, 60)
    assert quick.sample_distance_mm == 2.0 and final.sample_distance_mm == 1.0
    # The same picture, at half the resolution.
    small = np.asarray(Image.fromarray(final.pixels).resize((100, 60), Image.Resampling.BILINEAR))
    assert np.abs(small.astype(np.int16) - quick.pixels).mean() < 12
    settings = renderer.describe()
    assert settings["mapper"] == "vtkFixedPointVolumeRayCastMapper"
    assert settings["auto_adjust_sample_distances"] is False


def test_gpu_mapper_renders(ct: Volume) -> None:
    renderer = VolumeRenderer(ct, mapper=MapperKind.GPU)
    frame = renderer.render(RenderRequest(preset="ct-bone", camera=VIEW, size=(48, 48)))
    renderer.close()
    assert frame.pixels.any()


# --------------------------------------------------------------------------- cameras, presets


def test_orbit_camera_resolution() -> None:
    start = resolve_camera(OrbitCamera(), (1.0, 2.0, 3.0), 100.0)
    assert start.focal_point == (1.0, 2.0, 3.0)
    assert start.position[1] < -300 and start.view_up == pytest.approx((0.0, 0.0, 1.0))
    above = resolve_camera(OrbitCamera(elevation=90.0), (0.0, 0.0, 0.0), 100.0)
    assert above.position[2] > 300 and above.view_up == pytest.approx((0.0, 1.0, 0.0))
    zoomed = resolve_camera(OrbitCamera(zoom=2.0), (0.0, 0.0, 0.0), 100.0)
    ratio = np.tan(np.radians(start.view_angle / 2)) / np.tan(np.radians(zoomed.view_angle / 2))
    assert ratio == pytest.approx(2.0)
    assert resolve_camera(OrbitCamera(parallel=True, zoom=4.0), (0, 0, 0), 100.0
                          ).parallel_scale == pytest.approx(25.0)


def test_bad_cameras_and_requests(renderer: VolumeRenderer) -> None:
    with pytest.raises(RenderError, match="zoom"):
        renderer.render(RenderRequest(camera=OrbitCamera(zoom=0.0)))
    with pytest.raises(RenderError, match="finite"):
        renderer.render(RenderRequest(camera=OrbitCamera(azimuth=float("nan"))))
    with pytest.raises(RenderError, match="parallel"):
        renderer.render(RenderRequest(camera=ExplicitCamera((0, 0, 0), (0, 0, 1), (0, 0, 5))))
    with pytest.raises(RenderError, match="coincide"):
        renderer.render(RenderRequest(camera=ExplicitCamera((1, 1, 1), (1, 1, 1), (0, 0, 1))))
    with pytest.raises(RenderError, match="size"):
        renderer.render(RenderRequest(size=(0, 100)))
    with pytest.raises(RenderError, match="unknown preset 'ct-brain'"):
        renderer.render(RenderRequest(preset="ct-brain"))


def test_presets_are_data() -> None:
    assert set(PRESETS) == {"ct-bone", "ct-soft-tissue", "ct-lung", "ct-angio", "ct-mip",
                            "mr-default"}
    mr = get_preset("mr-default")
    resolved = mr.resolved(100.0, 1100.0)
    assert not resolved.relative
    assert resolved.opacity[0][0] == 100.0 and resolved.opacity[-1][0] == 1100.0
    bone = get_preset("ct-bone")
    assert bone.resolved(-1024, 3071) is bone
    assert bone.resolved(-1024, 3071, shift=50.0).color[1][0] == bone.color[1][0] + 50.0
    with pytest.raises(RenderError, match="value order"):
        Preset("bad", "Bad", color=((0.0, 0, 0, 0),), opacity=((10.0, 1.0), (0.0, 0.0)))


# --------------------------------------------------------------------------- encoding


def test_frame_encodings(renderer: VolumeRenderer) -> None:
    pixels = renderer.render(RenderRequest(camera=VIEW, size=SIZE)).pixels
    jpeg = encode_frame(pixels)
    png = encode_frame(pixels, ImageFormat.PNG)
    webp = encode_frame(pixels, ImageFormat.WEBP, quality=80)
    assert jpeg[:2] == b"\xff\xd8" and png[:8] == b"\x89PNG\r\n\x1a\n"
    assert webp[:4] == b"RIFF" and webp[8:12] == b"WEBP"
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(png))), pixels)
    decoded = np.asarray(Image.open(io.BytesIO(jpeg)))
    assert decoded.shape == pixels.shape
    assert np.abs(decoded.astype(np.int16) - pixels).mean() < 3
    assert ImageFormat.WEBP.media_type == "image/webp"
    grey = encode_frame(np.zeros((4, 5), np.uint8), ImageFormat.PNG)
    assert Image.open(io.BytesIO(grey)).size == (5, 4)
    with pytest.raises(EncodeError):
        encode_frame(np.zeros((4, 4), np.float32))
    with pytest.raises(EncodeError):
        encode_frame(pixels, quality=0)


def test_window_level() -> None:
    values = np.array([-1000.0, -160.0, 40.0, 239.0, 240.0, 3000.0])
    grey = apply_window(values, center=40.0, width=400.0)
    assert grey.tolist() == [0, 0, 128, 255, 255, 255]
    assert apply_window(np.array([0.0, 1.0]), center=1.0, width=1.0).tolist() == [0, 255]
    with pytest.raises(EncodeError):
        apply_window(values, center=40.0, width=0.0)
