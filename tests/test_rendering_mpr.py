"""MPR geometry: shapes at known patient positions appear there, the crosshair maps both ways,
values survive reslicing, slabs compute what they claim, and VTK agrees with scipy."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from consilium_rendering import (
    Orientation,
    Plane,
    PlaneError,
    Reslicer,
    Slab,
    SlabMode,
    Volume,
    build_volume,
    mpr_planes,
    oblique_plane,
    standard_plane,
    volume_from_array,
)
from consilium_rendering.geometry import Vec3, rotation_matrix, to_vec3
from consilium_rendering.phantom import Ellipsoid, PhantomGeometry, Sphere, phantom_series
from consilium_rendering.planes import framed_plane
from consilium_rendering.reslice_reference import reslice_reference

# An oblique acquisition (orientation turned 20 degrees about (1, 2, 3)), anisotropic voxels,
# origin far from zero; spheres well apart in every axis so that a plane through one centre
# meets no other sphere.
_R = rotation_matrix((1.0, 2.0, 3.0), 20.0)
_ORIGIN = np.array([-31.7, 12.4, -80.2])
GEOMETRY = PhantomGeometry(
    rows=64,
    columns=60,
    slices=52,
    row_spacing=1.1,
    column_spacing=0.9,
    slice_spacing=1.3,
    origin=(-31.7, 12.4, -80.2),
    row_cosine=tuple(float(v) for v in _R[:, 0]),  # type: ignore[arg-type]
    column_cosine=tuple(float(v) for v in _R[:, 1]),  # type: ignore[arg-type]
)
_MIDDLE = _ORIGIN + _R @ np.array([27.0, 35.0, 33.0])


def _at(offset: tuple[float, float, float]) -> tuple[float, float, float]:
    x, y, z = (float(v) for v in _MIDDLE + np.asarray(offset))
    return x, y, z


A = Sphere(_at((0.0, 0.0, 0.0)), 6.0, 800.0)
B = Sphere(_at((13.0, 15.0, 17.0)), 5.0, 500.0)
C = Sphere(_at((-14.0, -13.0, -16.0)), 4.5, 300.0)
SPHERES = (A, B, C)


@pytest.fixture(scope="module")
def volume() -> Volume:
    return build_volume(phantom_series(GEOMETRY, SPHERES))


@pytest.fixture(scope="module")
def reslicer(volume: Volume) -> Reslicer:
    return Reslicer(volume)


def _vec(values: np.ndarray) -> Vec3:
    return to_vec3(values)


def _blob_centre(plane: Plane, image: np.ndarray, background: float = -1000.0) -> np.ndarray:
    """Patient position of the value-weighted centroid of everything above background."""
    weights = np.clip(image.astype(np.float64) - background - 1.0, 0.0, None)
    assert weights.sum() > 0, "nothing in the plane"
    ys, xs = np.mgrid[0 : image.shape[0], 0 : image.shape[1]]
    x = float((weights * xs).sum() / weights.sum())
    y = float((weights * ys).sum() / weights.sum())
    return plane.to_patient(x, y)


# --------------------------------------------------------------------------- positions


@pytest.mark.parametrize("orientation", list(Orientation))
@pytest.mark.parametrize("sphere", SPHERES, ids=["A", "B", "C"])
def test_spheres_appear_at_their_positions(
    reslicer: Reslicer, volume: Volume, orientation: Orientation, sphere: Ellipsoid
) -> None:
    plane = standard_plane(volume, orientation, sphere.center)
    image = reslicer.reslice(plane)
    assert np.linalg.norm(_blob_centre(plane, image) - sphere.center) < 0.2
    x, y, distance = plane.from_patient(sphere.center)
    assert abs(distance) < 1e-9
    assert image[round(y), round(x)] == pytest.approx(sphere.value, abs=0.5)


@pytest.mark.parametrize("normal", [(1.0, 1.0, 1.0), (0.3, 0.8, -0.5), (0.0, 0.6, 0.8)])
def test_sphere_in_oblique_planes(reslicer: Reslicer, volume: Volume, normal: tuple[float, ...]
                                  ) -> None:
    plane = oblique_plane(volume, A.center, normal)
    assert np.allclose(plane.normal, np.asarray(normal) / np.linalg.norm(normal))
    image = reslicer.reslice(plane)
    assert np.linalg.norm(_blob_centre(plane, image) - A.center) < 0.2


def test_display_conventions(volume: Volume) -> None:
    planes = mpr_planes(volume, A.center)
    axial, coronal, sagittal = (planes[o] for o in Orientation)
    # Radiological: patient left on screen right, anterior on sagittal left, head up.
    assert axial.x_axis == (1.0, 0.0, 0.0) and axial.y_axis == (0.0, 1.0, 0.0)
    assert coronal.x_axis == (1.0, 0.0, 0.0) and coronal.y_axis == (0.0, 0.0, -1.0)
    assert sagittal.x_axis == (0.0, 1.0, 0.0) and sagittal.y_axis == (0.0, 0.0, -1.0)
    above = np.add(A.center, (0.0, 0.0, 10.0))
    assert coronal.from_patient(above)[1] < coronal.from_patient(A.center)[1]


def test_planes_cover_the_volume_and_keep_framing(volume: Volume) -> None:
    one = standard_plane(volume, Orientation.CORONAL, A.center)
    two = standard_plane(volume, Orientation.CORONAL, B.center)
    # Moving the crosshair moves the plane along its normal only.
    assert one.size == two.size and one.x_axis == two.x_axis
    np.testing.assert_allclose(one.from_patient(two.origin)[:2], (0.0, 0.0), atol=1e-9)
    for corner in volume.corners():
        x, y, _ = one.from_patient(corner)
        assert -1e-6 <= x <= one.size[0] - 1 + 1e-6 and -1e-6 <= y <= one.size[1] - 1 + 1e-6


# --------------------------------------------------------------------------- crosshair


def test_crosshair_maps_both_ways(volume: Volume) -> None:
    rng = np.random.default_rng(5)
    for point in volume.index_to_patient(rng.uniform(0, 50, size=(10, 3))):
        for plane in mpr_planes(volume, point).values():
            x, y, distance = plane.from_patient(point)
            assert abs(distance) < 1e-9
            np.testing.assert_allclose(plane.to_patient(x, y), point, atol=1e-9)

    # A click in the axial view moves the crosshair; the other planes follow through it.
    planes = mpr_planes(volume, A.center)
    x, y, _ = planes[Orientation.AXIAL].from_patient(A.center)
    clicked = planes[Orientation.AXIAL].to_patient(x + 7.3, y - 4.1)
    for plane in planes.values():
        moved = plane.through(clicked)
        cx, cy, distance = moved.from_patient(clicked)
        assert abs(distance) < 1e-9
        np.testing.assert_allclose(moved.to_patient(cx, cy), clicked, atol=1e-9)
    assert planes[Orientation.AXIAL].from_patient(clicked)[2] == pytest.approx(0.0, abs=1e-9)


def test_rotated_crosshair_gives_an_oblique_plane_through_the_point(
    volume: Volume, reslicer: Reslicer
) -> None:
    coronal = standard_plane(volume, Orientation.CORONAL, A.center)
    turned = coronal.rotated((0.0, 0.0, 1.0), -30.0, about=A.center)
    assert np.dot(turned.normal, (0.0, 1.0, 0.0)) == pytest.approx(np.cos(np.radians(30.0)))
    x, y, distance = turned.from_patient(A.center)
    assert abs(distance) < 1e-9
    np.testing.assert_allclose(turned.to_patient(x, y), A.center, atol=1e-9)
    refit = framed_plane(volume, A.center, turned.x_axis, turned.y_axis)
    image = reslicer.reslice(refit)
    assert np.linalg.norm(_blob_centre(refit, image) - A.center) < 0.2


def test_coarser_plane_covers_the_same_area(volume: Volume, reslicer: Reslicer) -> None:
    plane = oblique_plane(volume, A.center, (1.0, 1.0, 1.0))
    quick = plane.coarser(2.0)
    assert quick.size[0] == round((plane.size[0] - 1) / 2) + 1
    far = (plane.size[0] - 1, plane.size[1] - 1)
    np.testing.assert_allclose(quick.to_patient(quick.size[0] - 1, quick.size[1] - 1),
                               plane.to_patient(*far), atol=1e-9)
    assert np.linalg.norm(_blob_centre(quick, reslicer.reslice(quick)) - A.center) < 0.3
    assert plane.coarser(1.0) == plane
    with pytest.raises(PlaneError):
        plane.coarser(0.5)


def test_arrays_of_points_map_at_once(volume: Volume) -> None:
    plane = oblique_plane(volume, A.center, (1.0, 2.0, 2.0))
    xs, ys = np.meshgrid(np.arange(5.0), np.arange(3.0))
    points = plane.to_patient(xs, ys)
    assert points.shape == (3, 5, 3)
    back = plane.from_patient(points)
    np.testing.assert_allclose(back[..., 0], xs, atol=1e-9)
    np.testing.assert_allclose(back[..., 1], ys, atol=1e-9)
    np.testing.assert_allclose(back[..., 2], 0.0, atol=1e-9)


# --------------------------------------------------------------------------- values


@pytest.fixture(scope="module")
def noise_volume() -> Volume:
    """Axis-aligned, anisotropic, random HU: every voxel differs from its neighbours."""
    voxels = np.random.default_rng(11).integers(-1024, 3072, size=(20, 24, 28), dtype=np.int16)
    affine = np.diag([0.75, 0.75, 2.0, 1.0])
    affine[:3, 3] = (-40.0, 17.5, 102.0)
    return volume_from_array(voxels, affine)


def test_values_exact_at_voxel_centres(noise_volume: Volume) -> None:
    volume = noise_volume
    reslicer = Reslicer(volume)
    voxels = volume.voxels
    corner = np.asarray(volume.affine[:3, 3])
    top = volume.index_to_patient((0, 0, voxels.shape[0] - 1))
    k, j, i = 7, 9, 13
    axial = standard_plane(volume, Orientation.AXIAL, volume.index_to_patient((0, 0, k)))
    assert axial.size == (28, 24)
    np.testing.assert_array_equal(reslicer.reslice(axial), voxels[k])
    coronal = Plane(_vec(np.add(top, (0.0, j * 0.75, 0.0))), (1.0, 0.0, 0.0),
                    (0.0, 0.0, -1.0), (0.75, 2.0), (28, 20))
    np.testing.assert_array_equal(reslicer.reslice(coronal), voxels[::-1, j, :])
    sagittal = Plane(_vec(np.add(top, (i * 0.75, 0.0, 0.0))), (0.0, 1.0, 0.0),
                     (0.0, 0.0, -1.0), (0.75, 2.0), (24, 20))
    np.testing.assert_array_equal(reslicer.reslice(sagittal), voxels[::-1, :, i])
    np.testing.assert_array_equal(reslice_reference(volume, sagittal), voxels[::-1, :, i])
    assert corner[2] == pytest.approx(102.0)


def test_trilinear_between_voxels(noise_volume: Volume) -> None:
    volume = noise_volume
    v = volume.voxels.astype(np.float64)
    point = volume.index_to_patient((5.25, 6.5, 3.75))
    plane = Plane.centered(point, (1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.75, 0.75), (1, 1))
    value = float(Reslicer(volume).reslice(plane)[0, 0])
    fi, fj, fk = 0.25, 0.5, 0.75
    cube = v[3:5, 6:8, 5:7]
    expected = 0.0
    for dk in (0, 1):
        for dj in (0, 1):
            for di in (0, 1):
                w = (fk if dk else 1 - fk) * (fj if dj else 1 - fj) * (fi if di else 1 - fi)
                expected += w * cube[dk, dj, di]
    assert value == pytest.approx(expected, abs=0.01)


def test_vtk_agrees_with_scipy(volume: Volume, reslicer: Reslicer) -> None:
    plane = oblique_plane(volume, A.center, (0.2, -0.5, 0.8), x_hint=(1.0, 1.0, 0.0))
    for slab in (None, Slab(7.0, SlabMode.MAX), Slab(7.0, SlabMode.MIN), Slab(7.0, SlabMode.MEAN)):
        vtk_image = reslicer.reslice(plane, slab)
        reference = reslice_reference(volume, plane, slab)
        difference = np.abs(vtk_image - reference)
        assert difference.max() < 0.1, (slab, difference.max())


def test_edges_agree_with_scipy(noise_volume: Volume) -> None:
    """Framed planes reach up to a pixel past the last voxel centre: VTK and the reference
    treat the half voxel beyond the edge alike (edge value), and farther points as fill."""
    reslicer = Reslicer(noise_volume)
    for plane in mpr_planes(noise_volume, noise_volume.center).values():
        for slab in (None, *(Slab(5.0, mode) for mode in SlabMode)):
            np.testing.assert_allclose(reslicer.reslice(plane, slab),
                                       reslice_reference(noise_volume, plane, slab), atol=0.05)
    wide = replace(standard_plane(noise_volume, Orientation.CORONAL, noise_volume.center),
                   size=(60, 60))
    image = reslicer.reslice(wide)
    np.testing.assert_allclose(image, reslice_reference(noise_volume, wide), atol=0.05)
    assert (image == -1024.0).sum() > 1000


def test_outside_the_volume_takes_the_fill(volume: Volume, reslicer: Reslicer) -> None:
    far = standard_plane(volume, Orientation.AXIAL, (0.0, 0.0, 1000.0))
    assert np.all(reslicer.reslice(far) == -1000.0)  # the volume's lowest value: air
    assert np.all(reslicer.reslice(far, fill=-2048.0) == -2048.0)


# --------------------------------------------------------------------------- slabs


@pytest.fixture(scope="module")
def ramp() -> Volume:
    """Value = 10 x (patient z in mm), on a grid with 1.5 mm slices."""
    z = 100.0 + 1.5 * np.arange(40)
    voxels = np.broadcast_to((10.0 * z)[:, None, None], (40, 30, 30)).astype(np.float32)
    affine = np.diag([1.0, 1.0, 1.5, 1.0])
    affine[:3, 3] = (-15.0, -15.0, 100.0)
    return volume_from_array(voxels, affine)


@pytest.mark.parametrize("thickness", [3.0, 10.0, 12.5])
def test_slab_modes_on_a_ramp(ramp: Volume, thickness: float) -> None:
    reslicer = Reslicer(ramp)
    z0 = 127.3
    axial = standard_plane(ramp, Orientation.AXIAL, (0.0, 0.0, z0))
    expect = {SlabMode.MAX: z0 + thickness / 2, SlabMode.MIN: z0 - thickness / 2,
              SlabMode.MEAN: z0}
    for mode, z in expect.items():
        image = reslicer.reslice(axial, Slab(thickness, mode))
        np.testing.assert_allclose(image, 10.0 * z, atol=0.01)
    # Tilted 30 degrees: the slab spans thickness * cos(30) in z.
    tilted = oblique_plane(ramp, (0.0, 0.0, z0), (0.5, 0.0, np.sqrt(3.0) / 2.0))
    image = reslicer.reslice(tilted, Slab(thickness, SlabMode.MAX))
    cx, cy = (s // 2 for s in tilted.size)
    along = tilted.to_patient(cx, cy)[2]
    assert image[cy, cx] == pytest.approx(10.0 * (along + thickness / 2 * np.sqrt(3) / 2),
                                          abs=0.01)


def test_slab_running_off_the_scan_uses_what_there_is(ramp: Volume) -> None:
    reslicer = Reslicer(ramp)
    top = 100.0 + 1.5 * 39  # the last slice centre: z = 158.5
    plane = standard_plane(ramp, Orientation.AXIAL, (0.0, 0.0, top - 1.0))
    slab = Slab(6.0, SlabMode.MEAN, step_mm=1.0)  # samples at -3..+3 mm: the last two outside
    image = reslicer.reslice(plane, slab)
    np.testing.assert_allclose(image, 10.0 * (top - 1.0 - 1.0), atol=0.01)  # mean of -3..+1
    np.testing.assert_allclose(reslicer.reslice(plane, Slab(6.0, SlabMode.MIN, 1.0)),
                               10.0 * (top - 4.0), atol=0.01)
    for mode in SlabMode:
        np.testing.assert_allclose(reslicer.reslice(plane, Slab(6.0, mode, 1.0)),
                                   reslice_reference(ramp, plane, Slab(6.0, mode, 1.0)),
                                   atol=0.01)
    beyond = standard_plane(ramp, Orientation.AXIAL, (0.0, 0.0, top + 10.0))
    assert np.all(reslicer.reslice(beyond, slab) == ramp.value_range[0])


def test_slab_mip_reaches_a_sphere_beside_the_plane(volume: Volume, reslicer: Reslicer) -> None:
    plane = standard_plane(volume, Orientation.AXIAL, np.add(A.center, (0.0, 0.0, 4.0)))
    x, y, _ = plane.from_patient(A.center)
    thin = reslicer.reslice(plane)
    mip = reslicer.reslice(plane, Slab(10.0, SlabMode.MAX))
    minip = reslicer.reslice(plane, Slab(10.0, SlabMode.MIN))
    mean = reslicer.reslice(plane, Slab(10.0, SlabMode.MEAN))
    blob = (slice(round(y) - 1, round(y) + 2), slice(round(x) - 1, round(x) + 2))
    assert thin[blob].max() == pytest.approx(800.0, abs=1)  # 4 mm off a 6 mm sphere: inside
    assert np.all(mip[blob] == pytest.approx(800.0, abs=1))
    assert np.all(minip[blob] == pytest.approx(-1000.0, abs=1))  # the slab reaches air above
    assert np.all((mean[blob] > -1000.0) & (mean[blob] < 800.0))
    assert (mip > -999.0).sum() > (thin > -999.0).sum()  # the slab shows the whole sphere


# --------------------------------------------------------------------------- gantry tilt


def test_tilted_series_in_patient_planes() -> None:
    turn = rotation_matrix((1.0, 0.0, 0.0), 20.0)
    geometry = PhantomGeometry(
        rows=48, columns=40, slices=40, row_spacing=1.0, column_spacing=1.0, slice_spacing=1.5,
        origin=(-20.0, -30.0, -30.0),
        row_cosine=(1.0, 0.0, 0.0),
        column_cosine=tuple(float(v) for v in turn[:, 1]),  # type: ignore[arg-type]
        slice_direction=(0.0, 0.0, 1.0),
    )
    ball = Sphere((1.0, -2.0, 3.0), 5.0, 700.0)
    volume = build_volume(phantom_series(geometry, [ball]))
    assert volume.report.tilt_deg == pytest.approx(20.0)
    reslicer = Reslicer(volume)
    for plane in mpr_planes(volume, ball.center).values():
        image = reslicer.reslice(plane)
        assert np.linalg.norm(_blob_centre(plane, image) - ball.center) < 0.2


# --------------------------------------------------------------------------- bad requests


def test_bad_planes_and_slabs(volume: Volume, reslicer: Reslicer) -> None:
    with pytest.raises(PlaneError, match="orthogonal"):
        Plane((0.0, 0.0, 0.0), (1.0, 0.0, 0.0), (1.0, 1.0, 0.0))
    with pytest.raises(PlaneError, match="zero vector"):
        Plane((0.0, 0.0, 0.0), (0.0, 0.0, 0.0), (0.0, 1.0, 0.0))
    with pytest.raises(PlaneError, match="size"):
        Plane((0.0, 0.0, 0.0), (1.0, 0.0, 0.0), (0.0, 1.0, 0.0), size=(0, 10))
    with pytest.raises(PlaneError, match="spacing"):
        Plane((0.0, 0.0, 0.0), (1.0, 0.0, 0.0), (0.0, 1.0, 0.0), spacing=(0.0, 1.0))
    with pytest.raises(PlaneError, match="finite"):
        Plane((float("nan"), 0.0, 0.0), (1.0, 0.0, 0.0), (0.0, 1.0, 0.0))
    with pytest.raises(PlaneError, match="more than"):
        standard_plane(volume, Orientation.AXIAL, A.center, spacing=0.01)
    with pytest.raises(PlaneError, match="parallel"):
        oblique_plane(volume, A.center, (1.0, 0.0, 0.0), x_hint=(2.0, 0.0, 0.0))
    plane = standard_plane(volume, Orientation.AXIAL, A.center)
    with pytest.raises(PlaneError, match="thickness"):
        reslicer.reslice(plane, Slab(0.0))
    with pytest.raises(PlaneError, match="step"):
        reslicer.reslice(plane, Slab(5.0, step_mm=-1.0))
    assert replace(plane, size=(3, 2)).size == (3, 2)
