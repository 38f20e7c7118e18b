"""Statistics of an elliptical ROI drawn on an MPR plane, from the volume's own values.

An MPR pane shows windowed grey levels; the values under an ROI (HU for CT) are the volume's. The
ellipse comes as an MPR pane draws it: four patient points (LPS, mm), the ends of the major axis
then the ends of the minor axis. It is sampled on a grid in its own plane (axes along the
ellipse's axes) with one voxel step along each axis, laid so that a grid point falls on the voxel
centre nearest the ellipse's centre: on a standard plane of a volume whose axes it follows (an
axial ROI on an axial series) every sample is a voxel centre and the statistics are those of the
voxels whose centres lie inside the ellipse. Elsewhere the samples are interpolated (trilinear)
exactly as the pane's image is, and with a slab they are the slab's values (maximum, minimum or
mean across it) as the pane shows them.

Samples outside the volume are left out; an ellipse smaller than one sample counts the sample
nearest its centre. The work is bounded: an ellipse larger than the volume is refused, and the
grid is made coarser when pixels times slab samples would exceed ``max_samples``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from consilium_rendering.errors import RenderingError
from consilium_rendering.geometry import MAX_PLANE_PIXELS, Plane, Vec3
from consilium_rendering.reslice import Reslicer, Slab, slab_sampling, voxel_step
from consilium_rendering.volume import Volume

__all__ = ["MAX_ROI_SAMPLES", "RoiError", "RoiStatistics", "ellipse_statistics"]

_F64 = npt.NDArray[np.float64]

MAX_ROI_SAMPLES = 16_000_000
"""Pixels times slab samples beyond which the grid is made coarser (64 MB of float32)."""
_PERPENDICULAR = 0.02
"""Largest cosine between the two axes (about 1.1 degrees off a right angle)."""


class RoiError(RenderingError):
    """The four points are not an ellipse this volume can measure."""


@dataclass(frozen=True)
class RoiStatistics:
    """Values inside the ellipse, in the volume's units (``units``: HU for CT)."""

    mean: float
    stdev: float
    """Population standard deviation of the samples."""
    min: float
    max: float
    pixels: int
    """Samples inside the ellipse and the volume."""
    area_mm2: float
    spacing_mm: tuple[float, float]
    """Grid step along the major and the minor axis."""
    slab_samples: int
    """Planes sampled across the slab (1 without one)."""
    units: str


def _points(points: Sequence[Sequence[float]]) -> _F64:
    array = np.asarray(points, dtype=np.float64)
    if array.shape != (4, 3) or not np.all(np.isfinite(array)):
        raise RoiError("an ellipse is four points of three finite numbers (the ends of its "
                       "major axis, then of its minor axis)")
    return array


def ellipse_statistics(volume: Volume, points: Sequence[Sequence[float]],
                       slab: Slab | None = None, *, reslicer: Reslicer | None = None,
                       max_samples: int = MAX_ROI_SAMPLES) -> RoiStatistics:
    """Mean, standard deviation, minimum and maximum of ``volume`` inside the ellipse whose axes
    end at ``points`` (patient mm), on its plane or across ``slab`` centred on it.

    ``reslicer`` (of ``volume``) is reused when given. :class:`RoiError` when the points are no
    ellipse (axes not perpendicular or not sharing their middle, no area), when it is larger than
    the volume or lies outside it.
    """
    p = _points(points)
    centre = (p[0] + p[1]) / 2.0
    major, minor = p[1] - p[0], p[3] - p[2]
    a, b = float(np.linalg.norm(major)) / 2.0, float(np.linalg.norm(minor)) / 2.0
    if a < 1e-6 or b < 1e-6:
        raise RoiError("the ellipse has no area (an axis of zero length)")
    u, v = major / (2.0 * a), minor / (2.0 * b)
    if abs(float(u @ v)) > _PERPENDICULAR:
        raise RoiError("the ellipse's axes are not perpendicular")
    if float(np.linalg.norm((p[2] + p[3]) / 2.0 - centre)) > max(0.05, 0.01 * a):
        raise RoiError("the ellipse's axes do not cross at their middles")
    v = v - float(v @ u) * u
    v /= np.linalg.norm(v)
    corners = volume.corners()
    diagonal = float(np.linalg.norm(corners.max(axis=0) - corners.min(axis=0)))
    if a > diagonal:
        raise RoiError(f"the ellipse ({2 * a:.0f} mm across) is larger than the volume "
                       f"({diagonal:.0f} mm across)")
    normal = np.cross(u, v)

    # the grid through the voxel centre nearest the centre (projected into the plane)
    nearest = volume.index_to_patient(np.rint(volume.patient_to_index(centre)))
    anchor = nearest - float((nearest - centre) @ normal) * normal
    du, dv = float((centre - anchor) @ u), float((centre - anchor) @ v)
    su, sv = voxel_step(volume, u), voxel_step(volume, v)
    thin = Plane(_vec(anchor), _vec(u), _vec(v), (su, sv), (1, 1))
    count, _ = slab_sampling(volume, thin, slab)
    while True:
        lo_i, hi_i = _span(du, a, su)
        lo_j, hi_j = _span(dv, b, sv)
        width, height = hi_i - lo_i + 1, hi_j - lo_j + 1
        if width * height * count <= max_samples:
            break
        factor = max(1.01, math.sqrt(width * height * count / max_samples))
        su, sv = su * factor, sv * factor
    if max(width, height) > MAX_PLANE_PIXELS:
        raise RoiError(f"the ellipse would take {width}x{height} samples; draw a smaller one")
    origin = anchor + lo_i * su * u + lo_j * sv * v
    plane = Plane(_vec(origin), _vec(u), _vec(v), (su, sv), (width, height))
    values = (reslicer or Reslicer(volume)).reslice(plane, slab)

    x = (lo_i + np.arange(width)) * su - du  # along the major axis, from the centre
    y = (lo_j + np.arange(height)) * sv - dv
    inside = (x[np.newaxis, :] / a) ** 2 + (y[:, np.newaxis] / b) ** 2 <= 1.0 + 1e-9
    if not inside.any():  # smaller than one sample: the one nearest the centre
        inside[int(np.argmin(np.abs(y))), int(np.argmin(np.abs(x)))] = True
    inside &= _in_volume(volume, plane)
    picked = values[inside].astype(np.float64)
    if picked.size == 0:
        raise RoiError("the ellipse lies outside the volume")
    return RoiStatistics(
        mean=float(picked.mean()), stdev=float(picked.std()), min=float(picked.min()),
        max=float(picked.max()), pixels=int(picked.size), area_mm2=math.pi * a * b,
        spacing_mm=(su, sv), slab_samples=count, units=volume.meta.units,
    )


def _vec(array: _F64) -> Vec3:
    return float(array[0]), float(array[1]), float(array[2])


def _span(offset: float, half: float, step: float) -> tuple[int, int]:
    """Grid indexes covering ``[offset - half, offset + half]`` and the one nearest ``offset``."""
    middle = round(offset / step)
    low = math.ceil(round((offset - half) / step, 9))
    high = math.floor(round((offset + half) / step, 9))
    return min(low, middle), max(high, middle)


def _in_volume(volume: Volume, plane: Plane) -> npt.NDArray[np.bool_]:
    """Which pixels of ``plane`` lie inside the voxel grid (half a voxel beyond the centres)."""
    width, height = plane.size
    xs, ys = np.meshgrid(np.arange(width, dtype=np.float64), np.arange(height, dtype=np.float64))
    sx, sy = plane.spacing
    where = (np.asarray(plane.origin)
             + (xs * sx)[..., np.newaxis] * np.asarray(plane.x_axis)
             + (ys * sy)[..., np.newaxis] * np.asarray(plane.y_axis))
    index = volume.patient_to_index(where)
    limits = np.asarray(volume.dimensions, dtype=np.float64) - 0.5
    inside: npt.NDArray[np.bool_] = np.all((index >= -0.5) & (index <= limits), axis=-1)
    return inside
