"""The 3-D camera as data: an orbit around the volume or an explicit camera.

Every frame is rendered from a camera *spec*, never from the state of a previous frame, so the
same view state gives the same image in any worker, for every participant of a consilium.

:class:`OrbitCamera` starts from an anatomical view (anterior by default: the patient seen from
the front, head up, the patient's left on the screen's right) framing the whole volume, then
turns by ``azimuth`` about the screen's vertical axis (right-handed: +90 from anterior looks from
the patient's left), ``elevation`` about its horizontal axis (+90 looks down from above) and
``roll`` about the line of sight, magnifies by ``zoom`` and shifts by ``pan`` (mm in the
screen plane, right and up). Rotations are composed as matrices, so elevation +-90 degrees has
no gimbal problem. :func:`resolve_camera` turns either spec into an :class:`ExplicitCamera`.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from consilium_rendering.errors import PlaneError, RenderError
from consilium_rendering.geometry import Vec3, rotation_matrix, to_vec3

__all__ = ["CameraSpec", "ExplicitCamera", "OrbitCamera", "StartView", "resolve_camera"]

_F64 = npt.NDArray[np.float64]


class StartView(enum.Enum):
    """Where an orbit starts: the side of the patient the camera looks from."""

    ANTERIOR = "anterior"
    POSTERIOR = "posterior"
    LEFT = "left"
    RIGHT = "right"
    SUPERIOR = "superior"
    INFERIOR = "inferior"


# (direction from the focal point to the camera, view up), LPS.
_START: dict[StartView, tuple[Vec3, Vec3]] = {
    StartView.ANTERIOR: ((0.0, -1.0, 0.0), (0.0, 0.0, 1.0)),
    StartView.POSTERIOR: ((0.0, 1.0, 0.0), (0.0, 0.0, 1.0)),
    StartView.LEFT: ((1.0, 0.0, 0.0), (0.0, 0.0, 1.0)),
    StartView.RIGHT: ((-1.0, 0.0, 0.0), (0.0, 0.0, 1.0)),
    StartView.SUPERIOR: ((0.0, 0.0, 1.0), (0.0, -1.0, 0.0)),
    StartView.INFERIOR: ((0.0, 0.0, -1.0), (0.0, -1.0, 0.0)),
}

DEFAULT_VIEW_ANGLE = 30.0


@dataclass(frozen=True)
class OrbitCamera:
    """A camera orbiting the volume centre (angles in degrees)."""

    azimuth: float = 0.0
    elevation: float = 0.0
    roll: float = 0.0
    zoom: float = 1.0
    pan: tuple[float, float] = (0.0, 0.0)
    start: StartView = StartView.ANTERIOR
    parallel: bool = False
    """Parallel projection (no perspective)."""


@dataclass(frozen=True)
class ExplicitCamera:
    """A camera given outright, in patient coordinates (LPS, mm)."""

    position: Vec3
    focal_point: Vec3
    view_up: Vec3
    view_angle: float = DEFAULT_VIEW_ANGLE
    """Vertical field of view of a perspective camera, degrees."""
    parallel_scale: float | None = None
    """Half the height of the view in mm; set for a parallel projection."""


CameraSpec = OrbitCamera | ExplicitCamera


def _v(a: _F64) -> Vec3:
    return float(a[0]), float(a[1]), float(a[2])


def resolve_camera(spec: CameraSpec, center: Vec3, radius: float) -> ExplicitCamera:
    """The explicit camera for ``spec`` around a volume of bounding ``radius`` at ``center``."""
    if isinstance(spec, ExplicitCamera):
        return _checked(spec)
    values = (spec.azimuth, spec.elevation, spec.roll, spec.zoom, *spec.pan)
    if not all(math.isfinite(v) for v in values):
        raise RenderError(f"camera values must be finite numbers: {spec}")
    if spec.zoom <= 0:
        raise RenderError(f"camera zoom must be positive, got {spec.zoom}")
    back, up = (np.asarray(v, dtype=np.float64) for v in _START[spec.start])
    right = np.cross(-back, up)
    turn = rotation_matrix(up, spec.azimuth)
    back, right = turn @ back, turn @ right
    tilt = rotation_matrix(right, -spec.elevation)  # positive: the camera rises
    back, up = tilt @ back, tilt @ up
    spin = rotation_matrix(-back, spec.roll)
    up, right = spin @ up, spin @ right
    focal = np.asarray(center, dtype=np.float64) + spec.pan[0] * right + spec.pan[1] * up
    half_angle = math.radians(DEFAULT_VIEW_ANGLE / 2.0)
    distance = radius / math.sin(half_angle)
    position = focal + distance * back
    if spec.parallel:
        return ExplicitCamera(_v(position), _v(focal), _v(up), DEFAULT_VIEW_ANGLE,
                              radius / spec.zoom)
    view_angle = 2.0 * math.degrees(math.atan(math.tan(half_angle) / spec.zoom))
    return ExplicitCamera(_v(position), _v(focal), _v(up), view_angle, None)


def _checked(spec: ExplicitCamera) -> ExplicitCamera:
    try:
        position = np.asarray(to_vec3(spec.position, "camera position"))
        focal = np.asarray(to_vec3(spec.focal_point, "camera focal point"))
        up = np.asarray(to_vec3(spec.view_up, "camera view up"))
    except PlaneError as exc:
        raise RenderError(exc.message) from exc
    sight = focal - position
    if float(np.linalg.norm(sight)) < 1e-6:
        raise RenderError("camera position and focal point coincide")
    if float(np.linalg.norm(np.cross(sight, up))) < 1e-6 * float(np.linalg.norm(sight)):
        raise RenderError("camera view up is parallel to the line of sight (or zero)")
    if not 0.1 <= spec.view_angle < 179.0:
        raise RenderError(f"camera view angle must be 0.1 to 179 degrees, got {spec.view_angle}")
    if spec.parallel_scale is not None and not spec.parallel_scale > 0:
        raise RenderError(f"parallel scale must be positive, got {spec.parallel_scale}")
    return spec
