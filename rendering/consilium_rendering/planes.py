"""The planes of a 3-plane MPR: axial, coronal, sagittal and oblique, framed on a volume.

Orientations follow the radiological display convention, in patient axes (LPS), whatever the
acquisition orientation:

=========  ===================  ======================  ================
plane      x (screen right)     y (screen down)         normal (x cross y)
=========  ===================  ======================  ================
axial      patient left (+X)    posterior (+Y)          superior (+Z)
coronal    patient left (+X)    inferior (-Z)           posterior (+Y)
sagittal   posterior (+Y)       inferior (-Z)           patient right (-X)
=========  ===================  ======================  ================

A framed plane covers the projection of the whole voxel grid, and its in-plane framing does not
depend on the point it passes through, only on the direction: moving the crosshair moves the
other planes along their normals, never their pixels sideways. Default pixel spacing is the
smaller in-plane voxel spacing of the volume (square pixels; axial planes of an axial series
then sample exactly at voxel centres).
"""

from __future__ import annotations

import enum
import math

import numpy as np
import numpy.typing as npt

from consilium_rendering.errors import PlaneError
from consilium_rendering.geometry import MAX_PLANE_PIXELS, Plane, Vec3, to_vec3, unit_vector
from consilium_rendering.volume import Volume

__all__ = ["Orientation", "framed_plane", "mpr_planes", "oblique_plane", "standard_plane"]

_F64 = npt.NDArray[np.float64]


class Orientation(enum.Enum):
    AXIAL = "axial"
    CORONAL = "coronal"
    SAGITTAL = "sagittal"


_AXES: dict[Orientation, tuple[Vec3, Vec3]] = {
    Orientation.AXIAL: ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0)),
    Orientation.CORONAL: ((1.0, 0.0, 0.0), (0.0, 0.0, -1.0)),
    Orientation.SAGITTAL: ((0.0, 1.0, 0.0), (0.0, 0.0, -1.0)),
}


def default_spacing(volume: Volume) -> float:
    """The finer in-plane voxel spacing of ``volume``."""
    sx, sy, _ = volume.spacing
    return min(sx, sy)


def framed_plane(
    volume: Volume,
    point: npt.ArrayLike,
    x_axis: npt.ArrayLike,
    y_axis: npt.ArrayLike,
    spacing: float | None = None,
) -> Plane:
    """The plane through ``point`` with these axes, covering the whole volume."""
    x = unit_vector(x_axis, "plane x axis")
    y = unit_vector(y_axis, "plane y axis")
    p = np.asarray(to_vec3(point, "point"))
    step = default_spacing(volume) if spacing is None else float(spacing)
    if not (step > 0 and math.isfinite(step)):
        raise PlaneError(f"pixel spacing must be positive, got {spacing}")
    corners = volume.corners()
    # Round before floor/ceil so that corners exactly on the grid stay on it (float noise).
    lo_x, hi_x = _extent(corners @ x, step)
    lo_y, hi_y = _extent(corners @ y, step)
    normal = np.cross(x, y)
    origin = normal * float(p @ normal) + x * lo_x + y * lo_y
    width = round((hi_x - lo_x) / step) + 1
    height = round((hi_y - lo_y) / step) + 1
    if max(width, height) > MAX_PLANE_PIXELS:
        raise PlaneError(
            f"a plane covering the volume at {step:g} mm would be {width}x{height} pixels, "
            f"more than {MAX_PLANE_PIXELS}; choose a coarser spacing"
        )
    return Plane(
        (float(origin[0]), float(origin[1]), float(origin[2])),
        (float(x[0]), float(x[1]), float(x[2])),
        (float(y[0]), float(y[1]), float(y[2])),
        (step, step),
        (width, height),
    )


def _extent(values: _F64, step: float) -> tuple[float, float]:
    lo, hi = float(values.min()), float(values.max())
    # Keep the low edge where it is (voxel-centre aligned) and extend the high one to a whole
    # number of pixels.
    count = math.ceil(round((hi - lo) / step, 6))
    return lo, lo + count * step


def standard_plane(
    volume: Volume, orientation: Orientation, point: npt.ArrayLike, spacing: float | None = None
) -> Plane:
    """The axial, coronal or sagittal plane of ``volume`` through ``point``."""
    x, y = _AXES[orientation]
    return framed_plane(volume, point, x, y, spacing)


def mpr_planes(
    volume: Volume, point: npt.ArrayLike | None = None, spacing: float | None = None
) -> dict[Orientation, Plane]:
    """The three orthogonal planes through ``point`` (default: the volume centre)."""
    where = volume.center if point is None else to_vec3(point, "point")
    return {o: standard_plane(volume, o, where, spacing) for o in Orientation}


def oblique_plane(
    volume: Volume,
    point: npt.ArrayLike,
    normal: npt.ArrayLike,
    x_hint: npt.ArrayLike | None = None,
    spacing: float | None = None,
) -> Plane:
    """The plane through ``point`` perpendicular to ``normal``, covering the volume.

    Its x axis is ``x_hint`` projected into the plane (default: patient left, or posterior when
    the normal is nearly left-right), and y completes a right-handed frame (x cross y = normal).
    """
    n = unit_vector(normal, "plane normal")
    candidates = [x_hint] if x_hint is not None else [(1.0, 0.0, 0.0), (0.0, 1.0, 0.0)]
    for hint in candidates:
        h = unit_vector(hint, "x axis hint")
        x = h - float(h @ n) * n
        if float(np.linalg.norm(x)) > 1e-3:
            x /= np.linalg.norm(x)
            return framed_plane(volume, point, x, np.cross(n, x), spacing)
    raise PlaneError("the x axis hint is parallel to the plane normal")
