"""Oblique MIP/MinIP slabs from kept sheets: paging a slab along its normal resamples its two
faces and one new sheet, the pixels are those of a reslicer that kept nothing, and the samples
are as close to a fine-step slab as the evenly spaced ones were."""

from __future__ import annotations

import numpy as np
import pytest

from consilium_rendering import Reslicer, Slab, SlabMode, Volume, build_volume, oblique_plane
from consilium_rendering.geometry import Plane
from consilium_rendering.reslice import reslice_axes, slab_offsets, slab_sampling, voxel_step
from consilium_rendering.reslice_reference import reslice_reference
from tests.test_rendering_mpr import GEOMETRY, SPHERES, A

NORMAL = (0.3, -0.45, 0.84)


@pytest.fixture(scope="module")
def volume() -> Volume:
    from consilium_rendering.phantom import phantom_series
    return build_volume(phantom_series(GEOMETRY, SPHERES))


def _paged(volume: Volume, pages: int) -> Plane:
    """The oblique plane through sphere A, paged ``pages`` voxel steps along its normal (as
    the viewer pages a pane)."""
    plane = oblique_plane(volume, A.center, NORMAL, x_hint=(1.0, 1.0, 0.0))
    step = voxel_step(volume, plane.normal)
    shift = np.asarray(plane.normal) * step * pages
    return Plane(tuple(np.asarray(plane.origin) + shift), plane.x_axis,  # type: ignore[arg-type]
                 plane.y_axis, plane.spacing, plane.size)


class CountingReslicer(Reslicer):
    """Counts the thin planes resampled."""

    resampled = 0

    def _sheet(self, plane: Plane, offset: float) -> np.ndarray:
        self.resampled += 1
        return super()._sheet(plane, offset)


@pytest.mark.parametrize("mode", [SlabMode.MAX, SlabMode.MIN])
def test_kept_sheets_give_the_pixels_of_a_fresh_reslicer(volume: Volume, mode: SlabMode
                                                          ) -> None:
    slab = Slab(10.0, mode)
    kept = CountingReslicer(volume)
    kept.reslice(_paged(volume, 0), slab)
    assert kept.resampled == len(slab_offsets(volume, _paged(volume, 0), slab)) >= 10
    for page in (1, 2, 3, 2, 1, -1):
        image = kept.reslice(_paged(volume, page), slab)
        np.testing.assert_array_equal(image, Reslicer(volume).reslice(_paged(volume, page), slab))


def test_forward_and_back_resample_what_they_must(volume: Volume) -> None:
    slab = Slab(10.0, SlabMode.MAX)
    kept = CountingReslicer(volume)
    counts = []
    for page in (0, 1, 2, 1, 0):
        before = kept.resampled
        kept.reslice(_paged(volume, page), slab)
        counts.append(kept.resampled - before)
    assert counts[1:3] == [3, 3]  # two faces and the sheet entering the slab
    assert counts[3:] == [2, 2]  # going back: the sheets are kept, only the faces move


def test_another_plane_does_not_reuse_sheets(volume: Volume) -> None:
    slab = Slab(10.0, SlabMode.MAX)
    kept = CountingReslicer(volume)
    kept.reslice(_paged(volume, 0), slab)
    turned = oblique_plane(volume, A.center, (0.31, -0.45, 0.84), x_hint=(1.0, 1.0, 0.0))
    before = kept.resampled
    image = kept.reslice(turned, slab)
    assert kept.resampled - before == len(slab_offsets(volume, turned, slab))
    np.testing.assert_array_equal(image, Reslicer(volume).reslice(turned, slab))


def test_samples_are_never_farther_apart_than_the_step(volume: Volume) -> None:
    for pages in range(4):
        plane = _paged(volume, pages)
        offsets = slab_offsets(volume, plane, Slab(10.0, SlabMode.MAX))
        assert offsets[0] == -5.0 and offsets[-1] == 5.0
        assert np.all(np.diff(offsets) > 0)
        assert np.diff(offsets).max() <= voxel_step(volume, plane.normal) + 1e-9


@pytest.mark.parametrize("mode", [SlabMode.MAX, SlabMode.MIN])
def test_as_close_to_a_fine_slab_as_evenly_spaced_samples(volume: Volume, mode: SlabMode
                                                          ) -> None:
    reslicer = Reslicer(volume)
    for pages in range(3):
        plane = _paged(volume, pages)
        slab = Slab(10.0, mode)
        fine = reslice_reference(volume, plane, Slab(10.0, mode, step_mm=0.05))
        sheets = reslicer.reslice(plane, slab)
        count, step = slab_sampling(volume, plane, slab)
        even = reslicer._run(reslice_axes(volume, plane, step), plane.size, count,
                             volume.value_range[0], mode)
        np.testing.assert_allclose(sheets, reslice_reference(volume, plane, slab), atol=0.1)
        err_sheets = np.abs(sheets - fine)
        err_even = np.abs(even - fine)
        assert err_sheets.mean() <= 1.25 * err_even.mean() + 0.01, (err_sheets.mean(),
                                                                     err_even.mean())
        assert np.percentile(err_sheets, 99) <= 1.25 * np.percentile(err_even, 99) + 1.0
