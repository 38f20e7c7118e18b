"""Statistics of an elliptical ROI on an MPR plane (:mod:`consilium_rendering.roi`) against numpy
references: the voxels of a synthetic chest CT whose centres lie inside the ellipse (axial and
coronal planes, a mean slab), a uniform cylinder cut by an oblique plane, and the refusals."""

from __future__ import annotations

import math

import numpy as np
import pytest

from consilium.synthetic import PatientSpec, StudySpec, generate_ct_series
from consilium_rendering import Reslicer, Slab, SlabMode, Volume, build_volume
from consilium_rendering.roi import RoiError, ellipse_statistics
from consilium_rendering.volume import volume_from_array

STUDY = StudySpec(PatientSpec("ROI-001", "Roi^Stats"), "20261120")


@pytest.fixture(scope="module")
def ct() -> Volume:
    return build_volume(list(generate_ct_series(STUDY, slices=24, rows=160, columns=160,
                                                pixel_spacing_mm=2.0, slice_thickness_mm=2.5,
                                                uid_seed="roi-ct")))


def _ellipse(centre: np.ndarray, u: np.ndarray, a: float, v: np.ndarray, b: float
             ) -> list[list[float]]:
    """The four points an MPR pane sends: major axis ends, then minor axis ends."""
    return [list(centre - a * u), list(centre + a * u), list(centre - b * v), list(centre + b * v)]


def _reference(ct: Volume, values: np.ndarray, centres: np.ndarray, centre: np.ndarray,
               u: np.ndarray, a: float, v: np.ndarray, b: float) -> dict[str, float]:
    """Statistics of ``values`` at the voxel ``centres`` (patient mm) inside the ellipse."""
    d = centres - centre
    inside = ((d @ u) / a) ** 2 + ((d @ v) / b) ** 2 <= 1.0
    picked = values[inside].astype(np.float64)
    return {"mean": picked.mean(), "stdev": picked.std(), "min": picked.min(),
            "max": picked.max(), "pixels": picked.size}


def _close(stats: object, reference: dict[str, float], tolerance: float = 1e-3) -> None:
    for name, expected in reference.items():
        assert getattr(stats, name) == pytest.approx(expected, abs=tolerance), name


X, Y, Z = np.eye(3)


def _axial_slice(ct: Volume, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Voxel values of slice ``k`` and the patient positions of their centres."""
    rows, columns = ct.voxels.shape[1:]
    jj, ii = np.meshgrid(np.arange(rows), np.arange(columns), indexing="ij")
    index = np.stack([ii, jj, np.full_like(ii, k)], axis=-1).astype(np.float64)
    return np.asarray(ct.voxels[k]), ct.index_to_patient(index)


def test_axial_roi_is_the_voxels_inside_it(ct: Volume) -> None:
    assert ct.meta.units == "HU"
    k = 12
    values, centres = _axial_slice(ct, k)
    reslicer = Reslicer(ct)
    for centre_ij, u, a, v, b in (((80.3, 70.6), X, 31.7, Y, 17.2),   # wide, across the chest
                                  ((60.1, 90.4), Y, 22.9, X, 9.3),    # tall: major along y
                                  ((82.0, 77.0), -X, 5.1, Y, 4.4)):   # small, reversed axis
        centre = ct.index_to_patient(np.array([*centre_ij, k], dtype=np.float64))
        stats = ellipse_statistics(ct, _ellipse(centre, u, a, v, b), reslicer=reslicer)
        reference = _reference(ct, values, centres, centre, u, a, v, b)
        assert reference["pixels"] > 10 and reference["stdev"] > 1.0  # tissue, noise
        _close(stats, reference)
        assert stats.area_mm2 == pytest.approx(math.pi * a * b)
        assert stats.slab_samples == 1 and stats.units == "HU"
        assert stats.spacing_mm == pytest.approx((2.0, 2.0))


def test_a_mean_slab_averages_the_slices_across_it(ct: Volume) -> None:
    k = 10
    centre = ct.index_to_patient(np.array([78.4, 66.2, k], dtype=np.float64))
    points = _ellipse(centre, X, 25.3, Y, 14.1)
    _, centres = _axial_slice(ct, k)
    averaged = np.mean([np.asarray(ct.voxels[k + d], dtype=np.float64) for d in (-1, 0, 1)],
                       axis=0)
    stats = ellipse_statistics(ct, points, Slab(5.0, SlabMode.MEAN))  # 3 planes, 2.5 mm apart
    assert stats.slab_samples == 3
    _close(stats, _reference(ct, averaged, centres, centre, X, 25.3, Y, 14.1), 1e-2)
    maximum = np.max([np.asarray(ct.voxels[k + d]) for d in (-1, 0, 1)], axis=0)
    stats = ellipse_statistics(ct, points, Slab(5.0, SlabMode.MAX))
    _close(stats, _reference(ct, maximum, centres, centre, X, 25.3, Y, 14.1))


def test_coronal_roi_is_the_voxels_inside_it(ct: Volume) -> None:
    j = 70  # a row: the coronal plane through its centres
    slices, _, columns = ct.voxels.shape
    kk, ii = np.meshgrid(np.arange(slices), np.arange(columns), indexing="ij")
    index = np.stack([ii, np.full_like(ii, j), kk], axis=-1).astype(np.float64)
    centres = ct.index_to_patient(index)
    values = np.asarray(ct.voxels[:, j, :])
    centre = ct.index_to_patient(np.array([77.7, j, 11.4]))
    stats = ellipse_statistics(ct, _ellipse(centre, X, 30.2, -Z, 12.6))
    _close(stats, _reference(ct, values, centres, centre, X, 30.2, -Z, 12.6))


def _cylinder() -> Volume:
    """A 60 HU cylinder (radius 30 mm, along z) in air, 1 x 1 x 2 mm voxels."""
    shape = (40, 96, 96)
    _, j, i = np.indices(shape)
    voxels = np.where((i - 47.5) ** 2 + (j - 47.5) ** 2 <= 30.0**2, 60, -1000).astype(np.int16)
    affine = np.diag([1.0, 1.0, 2.0, 1.0])
    return volume_from_array(voxels, affine)


def test_oblique_roi_in_a_uniform_cylinder() -> None:
    volume = _cylinder()
    centre = np.array([47.5, 47.5, 40.0])
    n = np.array([0.3, -0.2, 1.0])
    n /= np.linalg.norm(n)
    u = np.cross(n, [0.0, 1.0, 0.0])
    u /= np.linalg.norm(u)
    v = np.cross(n, u)
    stats = ellipse_statistics(volume, _ellipse(centre, u, 20.0, v, 12.0))
    assert (stats.mean, stats.stdev, stats.min, stats.max) == pytest.approx((60, 0, 60, 60),
                                                                             abs=1e-3)
    expected = math.pi * 20.0 * 12.0 / (stats.spacing_mm[0] * stats.spacing_mm[1])
    assert stats.pixels == pytest.approx(expected, rel=0.05)
    # half in air: the mean is between, min and max the two values
    stats = ellipse_statistics(volume, _ellipse(centre + 30.0 * u, u, 20.0, v, 12.0))
    assert stats.min == pytest.approx(-1000, abs=1) and stats.max == pytest.approx(60, abs=1)
    assert -1000 < stats.mean < 60


def test_samples_outside_the_volume_are_left_out() -> None:
    volume = _cylinder()  # x from -0.5 to 95.5 mm
    centre = np.array([95.0, 47.5, 40.0])
    stats = ellipse_statistics(volume, _ellipse(centre, X, 10.0, Y, 10.0))
    assert stats.pixels == pytest.approx(math.pi * 100 / 2, rel=0.1)  # half of it is inside
    assert stats.max == -1000


def test_a_large_roi_is_sampled_coarser_within_the_bound() -> None:
    volume = _cylinder()
    points = _ellipse(np.array([47.5, 47.5, 40.0]), X, 25.0, Y, 25.0)
    fine = ellipse_statistics(volume, points)
    coarse = ellipse_statistics(volume, points, max_samples=400)
    assert fine.pixels > 1500 and coarse.pixels <= 400
    assert coarse.spacing_mm[0] > 2 * fine.spacing_mm[0]
    assert coarse.mean == pytest.approx(60, abs=1e-3)


def test_a_tiny_roi_counts_the_sample_at_its_centre(ct: Volume) -> None:
    centre = ct.index_to_patient(np.array([80.0, 70.0, 12.0]))
    stats = ellipse_statistics(ct, _ellipse(centre, X, 0.3, Y, 0.2))
    assert stats.pixels == 1 and stats.mean == float(ct.voxels[12, 70, 80])


@pytest.mark.parametrize("points, message", [
    ([[0, 0, 0], [10, 0, 0], [4, -3, 0], [6, 3, 0]], "perpendicular"),
    ([[0, 0, 0], [10, 0, 0], [5, 0, 0], [5, 0, 0]], "no area"),
    ([[0, 0, 0], [10, 0, 0], [2, -3, 0], [2, 3, 0]], "middles"),
    ([[0, 0, 0], [10, 0, 0], [5, -3, 0]], "four points"),
    ([[-5000, 0, 0], [5000, 0, 0], [0, -3, 0], [0, 3, 0]], "larger than the volume"),
    ([[500, 500, 500], [510, 500, 500], [505, 497, 500], [505, 503, 500]], "outside"),
])
def test_what_is_no_ellipse_of_this_volume_is_refused(points: list[list[float]],
                                                      message: str) -> None:
    with pytest.raises(RoiError, match=message):
        ellipse_statistics(_cylinder(), points)
