"""Planes in patient space and the mapping between their pixels and patient points.

A :class:`Plane` is what an MPR viewport shows: ``size`` pixels of ``spacing`` mm laid along two
orthonormal patient directions from an ``origin``. Pixel coordinates are continuous, with
``(0, 0)`` the centre of the top-left pixel, x to the right and y downwards, as on screen. The
crosshair and annotations go through :meth:`Plane.to_patient` and :meth:`Plane.from_patient`,
which are exact inverses of each other (float64 throughout).

Vectors cross the API as plain tuples so that a plane can travel as JSON in a view state.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

from consilium_rendering.errors import PlaneError

__all__ = ["MAX_PLANE_PIXELS", "Plane", "Vec3", "rotation_matrix", "to_vec3", "unit_vector"]

Vec3 = tuple[float, float, float]
_F64 = npt.NDArray[np.float64]

MAX_PLANE_PIXELS = 4096
"""Largest width or height of a plane image."""
_ORTHOGONALITY = 1e-6


def to_vec3(value: npt.ArrayLike, what: str = "vector") -> Vec3:
    """Three finite floats, or :class:`PlaneError`."""
    try:
        array = np.asarray(value, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise PlaneError(f"{what} must be three numbers, got {value!r}") from exc
    if array.shape != (3,) or not np.all(np.isfinite(array)):
        raise PlaneError(f"{what} must be three finite numbers, got {value!r}")
    return float(array[0]), float(array[1]), float(array[2])


def unit_vector(value: npt.ArrayLike, what: str = "direction") -> _F64:
    """``value`` scaled to length 1, or :class:`PlaneError` for a zero vector."""
    vector = np.asarray(to_vec3(value, what), dtype=np.float64)
    norm = float(np.linalg.norm(vector))
    if norm < 1e-9:
        raise PlaneError(f"{what} must not be a zero vector")
    return vector / norm


def rotation_matrix(axis: npt.ArrayLike, degrees: float) -> _F64:
    """3x3 right-handed rotation by ``degrees`` about ``axis`` (Rodrigues)."""
    a = unit_vector(axis, "rotation axis")
    t = math.radians(degrees)
    k = np.array([[0.0, -a[2], a[1]], [a[2], 0.0, -a[0]], [-a[1], a[0], 0.0]])
    rotation: _F64 = np.eye(3) + math.sin(t) * k + (1.0 - math.cos(t)) * (k @ k)
    return rotation


def _vec(array: _F64) -> Vec3:
    return float(array[0]), float(array[1]), float(array[2])


@dataclass(frozen=True)
class Plane:
    """An image plane in patient space (LPS, mm)."""

    origin: Vec3
    """Patient position of the centre of pixel (0, 0), the top-left one."""
    x_axis: Vec3
    """Unit patient direction of increasing x (to the right on screen)."""
    y_axis: Vec3
    """Unit patient direction of increasing y (downwards on screen); orthogonal to ``x_axis``."""
    spacing: tuple[float, float] = (1.0, 1.0)
    """Millimetres per pixel along x and y."""
    size: tuple[int, int] = (256, 256)
    """Width and height in pixels."""

    def __post_init__(self) -> None:
        x = unit_vector(self.x_axis, "plane x axis")
        y = unit_vector(self.y_axis, "plane y axis")
        if abs(float(x @ y)) > _ORTHOGONALITY:
            raise PlaneError(
                f"plane axes must be orthogonal; x . y = {float(x @ y):.6f} for x={self.x_axis},"
                f" y={self.y_axis}"
            )
        sx, sy = (float(v) for v in self.spacing)
        if not (sx > 0 and sy > 0 and math.isfinite(sx) and math.isfinite(sy)):
            raise PlaneError(f"pixel spacing must be positive, got {self.spacing}")
        width, height = (int(v) for v in self.size)
        if not (1 <= width <= MAX_PLANE_PIXELS and 1 <= height <= MAX_PLANE_PIXELS):
            raise PlaneError(
                f"plane size must be 1 to {MAX_PLANE_PIXELS} pixels per side, got {self.size}"
            )
        object.__setattr__(self, "origin", to_vec3(self.origin, "plane origin"))
        object.__setattr__(self, "x_axis", _vec(x))
        object.__setattr__(self, "y_axis", _vec(y))
        object.__setattr__(self, "spacing", (sx, sy))
        object.__setattr__(self, "size", (width, height))

    @classmethod
    def centered(
        cls,
        center: npt.ArrayLike,
        x_axis: npt.ArrayLike,
        y_axis: npt.ArrayLike,
        spacing: tuple[float, float],
        size: tuple[int, int],
    ) -> Plane:
        """A plane whose image centre is ``center``."""
        x = unit_vector(x_axis, "plane x axis")
        y = unit_vector(y_axis, "plane y axis")
        c = np.asarray(to_vec3(center, "plane centre"))
        half_x = (size[0] - 1) / 2.0 * spacing[0]
        half_y = (size[1] - 1) / 2.0 * spacing[1]
        return cls(_vec(c - half_x * x - half_y * y), _vec(x), _vec(y), spacing, size)

    @property
    def normal(self) -> Vec3:
        """x_axis x y_axis: the direction of positive distances from the plane."""
        return _vec(np.cross(self.x_axis, self.y_axis))

    @property
    def center(self) -> Vec3:
        """Patient position of the image centre."""
        width, height = self.size
        return _vec(self.to_patient((width - 1) / 2.0, (height - 1) / 2.0))

    def matrix(self) -> _F64:
        """4x4 from (x pixel, y pixel, mm along the normal, 1) to patient position."""
        m = np.eye(4)
        m[:3, 0] = np.asarray(self.x_axis) * self.spacing[0]
        m[:3, 1] = np.asarray(self.y_axis) * self.spacing[1]
        m[:3, 2] = self.normal
        m[:3, 3] = self.origin
        return m

    def to_patient(self, x: npt.ArrayLike, y: npt.ArrayLike) -> _F64:
        """Patient positions of pixel coordinates ``(x, y)``; arrays broadcast, shape (..., 3)."""
        xs = np.asarray(x, dtype=np.float64)[..., None] * self.spacing[0]
        ys = np.asarray(y, dtype=np.float64)[..., None] * self.spacing[1]
        points: _F64 = np.asarray(self.origin) + xs * np.asarray(self.x_axis)
        points += ys * np.asarray(self.y_axis)
        return points

    def from_patient(self, points: npt.ArrayLike) -> _F64:
        """``(x, y, distance)`` of patient positions (..., 3): pixel coordinates of their
        projection onto the plane and their signed distance (mm) along :attr:`normal`."""
        d = np.asarray(points, dtype=np.float64) - np.asarray(self.origin)
        return np.stack(
            [
                d @ np.asarray(self.x_axis) / self.spacing[0],
                d @ np.asarray(self.y_axis) / self.spacing[1],
                d @ np.asarray(self.normal),
            ],
            axis=-1,
        )

    def coarser(self, factor: float) -> Plane:
        """The same area with about ``factor`` times fewer pixels per side (adaptive quality:
        a cheap frame while the user drags, the full plane when they stop). The corner pixel
        centres stay where they are, so the image scales back onto the full one exactly."""
        if not (factor >= 1.0 and math.isfinite(factor)):
            raise PlaneError(f"a coarser plane needs a factor of at least 1, got {factor}")
        sizes: list[int] = []
        spacings: list[float] = []
        for n, step in zip(self.size, self.spacing, strict=True):
            coarse = max(2, round((n - 1) / factor) + 1) if n > 1 else 1
            sizes.append(coarse)
            if coarse == n:
                spacings.append(step)
            else:
                spacings.append(step * (n - 1) / (coarse - 1) if coarse > 1 else step * factor)
        return replace(self, size=(sizes[0], sizes[1]), spacing=(spacings[0], spacings[1]))

    def through(self, point: npt.ArrayLike) -> Plane:
        """The same framing moved along the normal so that the plane contains ``point``."""
        p = np.asarray(to_vec3(point, "point"))
        n = np.asarray(self.normal)
        shift = float((p - np.asarray(self.origin)) @ n)
        return replace(self, origin=_vec(np.asarray(self.origin) + shift * n))

    def rotated(self, axis: npt.ArrayLike, degrees: float, about: npt.ArrayLike) -> Plane:
        """The plane turned by ``degrees`` about ``axis`` through the patient point ``about``."""
        r = rotation_matrix(axis, degrees)
        pivot = np.asarray(to_vec3(about, "rotation centre"))
        origin = pivot + r @ (np.asarray(self.origin) - pivot)
        return replace(
            self,
            origin=_vec(origin),
            x_axis=_vec(r @ np.asarray(self.x_axis)),
            y_axis=_vec(r @ np.asarray(self.y_axis)),
        )
