"""The MPR of :mod:`.reslice` in plain numpy + scipy, as a reference and a baseline.

Same sample positions, same trilinear interpolation (``scipy.ndimage.map_coordinates`` with
``order=1``), same slab reduction. Used by the tests to check the VTK path and by
``bench/render.py`` to compare speeds. scipy is an optional dependency (the ``test`` extra).
"""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np
import numpy.typing as npt

from consilium_rendering.geometry import Plane
from consilium_rendering.reslice import Slab, SlabMode, reslice_axes, slab_offsets
from consilium_rendering.volume import Volume

__all__ = ["reslice_reference"]

_F32 = npt.NDArray[np.float32]


def reslice_reference(
    volume: Volume, plane: Plane, slab: Slab | None = None, *, fill: float | None = None
) -> _F32:
    """The image of ``plane`` computed with scipy: (height, width) float32."""
    ndimage: Any = importlib.import_module("scipy.ndimage")
    axes = reslice_axes(volume, plane)
    width, height = plane.size
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    background = volume.value_range[0] if fill is None else float(fill)
    mode = SlabMode.MEAN if slab is None else slab.mode
    upper = np.asarray(volume.voxels.shape, dtype=np.float64)[:, None, None] - 1.0
    start = {SlabMode.MAX: -np.inf, SlabMode.MIN: np.inf, SlabMode.MEAN: 0.0}[mode]
    result = np.full((height, width), start, dtype=np.float64)
    inside_count = np.zeros((height, width), dtype=np.int64)
    for offset in slab_offsets(volume, plane, slab):
        ijk = (
            axes[:3, 0, None, None] * xs
            + axes[:3, 1, None, None] * ys
            + (axes[:3, 2] * offset + axes[:3, 3])[:, None, None]
        )
        coordinates = np.stack([ijk[2], ijk[1], ijk[0]])  # numpy order: k, j, i
        # As vtkImageReslice (Border on): a voxel reaches half a voxel beyond its centre, so
        # points up to half a voxel outside the grid take the edge value; farther ones are
        # outside, and a slab leaves them out.
        inside = np.all((coordinates >= -0.5) & (coordinates <= upper + 0.5), axis=0)
        np.clip(coordinates, 0.0, upper, out=coordinates)
        sample = ndimage.map_coordinates(
            volume.voxels, coordinates, order=1, mode="nearest", output=np.float64
        )
        inside_count += inside
        if mode is SlabMode.MEAN:
            result += np.where(inside, sample, 0.0)
        elif mode is SlabMode.MAX:
            np.maximum(result, np.where(inside, sample, -np.inf), out=result)
        else:
            np.minimum(result, np.where(inside, sample, np.inf), out=result)
    if mode is SlabMode.MEAN:
        np.divide(result, inside_count, out=result, where=inside_count > 0)
    result[inside_count == 0] = background
    return result.astype(np.float32)
