"""What travels between the web process and the render workers, and how requests become it.

Plain, picklable dataclasses with no VTK in them: the web process never imports
``consilium_rendering`` (about 75 MB and 0.4 s of VTK); the worker translates a spec into the
library's types. The parsers here are shared by the HTTP routes (query strings) and the
Socket.IO events (JSON payloads), so a view means the same thing on both paths: a vector is
``"x,y,z"`` or ``[x, y, z]``, a number is a number or its text.

Syntax errors are :class:`BadParameter` (HTTP 400). Values that are well formed but make no
sense for the volume (a zero normal, an unknown preset) are found by the library in the worker
and answered 422 with its message.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from consilium.errors import InvalidInput

Vec3 = tuple[float, float, float]

ORIENTATIONS = ("axial", "coronal", "sagittal", "oblique")
SLAB_MODES = {"mip": "max", "max": "max", "minip": "min", "min": "min", "mean": "mean",
              "avg": "mean", "average": "mean"}
FORMATS = {"jpeg": "jpeg", "jpg": "jpeg", "png": "png", "webp": "webp"}
QUALITIES = ("final", "interactive")
START_VIEWS = ("anterior", "posterior", "left", "right", "superior", "inferior")
MAX_SIDE = 4096
MAX_CLIP_PLANES = 6

Quality = Literal["final", "interactive"]


class BadParameter(InvalidInput, ValueError):
    """A request parameter that cannot be read (HTTP 400, reason ``parameter``)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, reason="parameter")


# --------------------------------------------------------------------------- specs


@dataclass(frozen=True)
class SeriesSource:
    """The stored files of one series, as the archive index lists them."""

    series_uid: str
    study_uid: str
    paths: tuple[str, ...]
    fingerprint: str
    """Digest of the instances' content hashes: a series that gained or changed instances is
    another volume (another cache key)."""

    @staticmethod
    def digest(hashes: Sequence[str]) -> str:
        return hashlib.sha256("\n".join(sorted(hashes)).encode()).hexdigest()[:32]

    @property
    def key(self) -> tuple[str, str]:
        return self.series_uid, self.fingerprint


@dataclass(frozen=True)
class InfoSpec:
    """Volume geometry, build report, standard planes."""


@dataclass(frozen=True)
class Output:
    """How a frame is encoded."""

    image_format: str = "jpeg"
    jpeg_quality: int = 85


@dataclass(frozen=True)
class MprSpec:
    """One MPR image: a standard plane or an oblique one through ``point``."""

    orientation: str = "axial"
    point: Vec3 | None = None
    """Patient position (LPS, mm) the plane passes through; default: the volume centre."""
    normal: Vec3 | None = None
    """Oblique planes: the plane normal."""
    x_axis: Vec3 | None = None
    """Oblique planes: the direction of screen-right, projected into the plane."""
    slab_mm: float = 0.0
    slab_mode: str = "max"
    window: tuple[float, float] | None = None
    """(centre, width); default: a soft-tissue window for CT, the robust range otherwise."""
    size: int | None = 512
    """Largest side of the image in pixels (never upsampled beyond the voxel spacing)."""
    quality: Quality = "final"
    output: Output = field(default_factory=Output)


@dataclass(frozen=True)
class ClipPlaneSpec:
    origin: Vec3
    normal: Vec3


@dataclass(frozen=True)
class VolumeSpec:
    """One volume-rendered frame from an orbit camera."""

    preset: str | None = None
    """Default: by modality (CT bone for CT, the MR preset otherwise)."""
    azimuth: float = 0.0
    elevation: float = 0.0
    roll: float = 0.0
    zoom: float = 1.0
    pan: tuple[float, float] = (0.0, 0.0)
    start: str = "anterior"
    parallel: bool = False
    size: tuple[int, int] = (512, 512)
    quality: Quality = "final"
    clip_box: tuple[Vec3, Vec3] | None = None
    clip_planes: tuple[ClipPlaneSpec, ...] = ()
    shift: float = 0.0
    output: Output = field(default_factory=Output)
    preview: bool = False
    """While the full volume's ray caster is cold, answer at once from a coarse copy of the
    volume (a frame marked ``preview``) instead of waiting seconds for its gradients. Set by a
    render stream for its first frame, never read from a request."""


@dataclass(frozen=True)
class IsosurfaceSpec:
    level: float = 300.0
    step: int = 2


@dataclass(frozen=True)
class RoiStatsSpec:
    """Values inside an elliptical ROI of an MPR plane (:mod:`.roi_stats`): the ends of its
    major then minor axis (patient LPS mm), across a slab of ``slab_mm`` when not 0."""

    points: tuple[Vec3, Vec3, Vec3, Vec3]
    slab_mm: float = 0.0
    slab_mode: str = "max"


Spec = InfoSpec | MprSpec | VolumeSpec | IsosurfaceSpec | RoiStatsSpec


@dataclass(frozen=True)
class Job:
    source: SeriesSource
    spec: Spec
    background: bool = False
    """Work nobody waits for (preparing a volume before it is asked for): the worker takes it
    after every other job queued (:class:`consilium.render.workers.JobQueue`)."""


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class Timing:
    build_ms: float | None
    """Time to build the volume from its files when this job had to (None: it was cached)."""
    render_ms: float
    """Time of the rendering itself, encoding included."""


@dataclass(frozen=True)
class InfoResult:
    payload: dict[str, Any]
    timing: Timing


@dataclass(frozen=True)
class FrameResult:
    data: bytes
    media_type: str
    width: int
    height: int
    quality: Quality
    geometry: dict[str, Any]
    """Plane (MPR: origin, axes, spacing, size) or camera (3-D) of the frame, patient LPS mm."""
    timing: Timing
    preview: bool = False
    """Rendered from a coarse copy of the volume (see :attr:`VolumeSpec.preview`): not the
    final pixels of this view."""


@dataclass(frozen=True)
class SurfaceResult:
    data: bytes
    triangles: int
    bounds: tuple[Vec3, Vec3]
    timing: Timing


@dataclass(frozen=True)
class StatsResult:
    payload: dict[str, Any]
    """mean, stdev, min, max, pixels, area_mm2, unit, spacing_mm, slab_samples"""
    timing: Timing


@dataclass(frozen=True)
class Failure:
    """A job the library refused (``status`` 422, with its message) or a bug (500)."""

    status: int
    message: str
    reason: str = ""


Result = InfoResult | FrameResult | SurfaceResult | StatsResult | Failure


# --------------------------------------------------------------------------- parsing


def _text(value: Any) -> str:
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value)
    return str(value).strip()


def number(params: Mapping[str, Any], name: str, default: float, *, low: float | None = None,
           high: float | None = None) -> float:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except (TypeError, ValueError) as exc:
        raise BadParameter(f"{name} must be a number, got {raw!r}") from exc
    if not math.isfinite(value):
        raise BadParameter(f"{name} must be a finite number, got {raw!r}")
    if (low is not None and value < low) or (high is not None and value > high):
        raise BadParameter(f"{name} must be between {low:g} and {high:g}, got {value:g}")
    return value


def integer(params: Mapping[str, Any], name: str, default: int, *, low: int, high: int) -> int:
    value = number(params, name, float(default), low=low, high=high)
    if value != int(value):
        raise BadParameter(f"{name} must be a whole number, got {params.get(name)!r}")
    return int(value)


def numbers(value: Any, name: str, count: int) -> tuple[float, ...]:
    """``count`` finite numbers from ``"a,b,c"`` or a list."""
    parts = value if isinstance(value, list | tuple) else _text(value).split(",")
    try:
        out = tuple(float(p) for p in parts)
    except (TypeError, ValueError) as exc:
        raise BadParameter(f"{name} must be {count} numbers separated by commas, got "
                           f"{_text(value)!r}") from exc
    if len(out) != count or not all(math.isfinite(v) for v in out):
        raise BadParameter(f"{name} must be {count} finite numbers, got {_text(value)!r}")
    return out


def vector(params: Mapping[str, Any], name: str) -> Vec3 | None:
    raw = params.get(name)
    if raw is None or raw == "":
        return None
    x, y, z = numbers(raw, name, 3)
    return x, y, z


def choice(params: Mapping[str, Any], name: str, options: Mapping[str, str] | Sequence[str],
           default: str) -> str:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    key = _text(raw).lower()
    if isinstance(options, Mapping):
        if key in options:
            return options[key]
    elif key in options:
        return key
    raise BadParameter(f"{name} must be one of {', '.join(options)}, got {_text(raw)!r}")


def flag(params: Mapping[str, Any], name: str) -> bool:
    raw = params.get(name)
    if isinstance(raw, bool):
        return raw
    return _text(raw).lower() in ("1", "true", "yes", "on") if raw is not None else False


def quality(params: Mapping[str, Any]) -> Quality:
    return "interactive" if choice(params, "quality", QUALITIES, "final") == "interactive" \
        else "final"


def output(params: Mapping[str, Any]) -> Output:
    return Output(choice(params, "format", FORMATS, "jpeg"),
                  integer(params, "jpeg_quality", 85, low=1, high=100))


MPR_KEYS = frozenset({"orientation", "point", "normal", "x_axis", "slab", "mode", "window",
                      "size", "quality", "format", "jpeg_quality"})
VOLUME_KEYS = frozenset({"preset", "azimuth", "elevation", "roll", "zoom", "pan", "start",
                         "parallel", "size", "quality", "clip", "clipplane", "shift", "format",
                         "jpeg_quality"})


def check_keys(params: Mapping[str, Any], known: frozenset[str]) -> None:
    """Refuse parameters nobody reads (a typo, or a client filling memory)."""
    unknown = sorted(str(k) for k in params if k not in known)
    if unknown:
        raise BadParameter(f"unknown parameter(s) {', '.join(unknown)[:200]}; known: "
                           f"{', '.join(sorted(known))}")


def parse_mpr(params: Mapping[str, Any]) -> MprSpec:
    """``orientation``, ``point``, ``normal``, ``x_axis``, ``slab``, ``mode``, ``window``,
    ``size``, ``quality``, ``format``, ``jpeg_quality``."""
    orientation = choice(params, "orientation", ORIENTATIONS, "axial")
    normal = vector(params, "normal")
    if orientation == "oblique" and normal is None:
        raise BadParameter("an oblique plane needs normal=x,y,z")
    window = None
    if params.get("window") not in (None, ""):
        centre, width = numbers(params["window"], "window", 2)
        if width < 1:
            raise BadParameter(f"window width must be at least 1, got {width:g}")
        window = (centre, width)
    size = integer(params, "size", 512, low=0, high=MAX_SIDE)
    if 0 < size < 16:
        raise BadParameter(f"size must be 0 (the voxel spacing) or 16 to {MAX_SIDE}, got {size}")
    return MprSpec(
        orientation=orientation,
        point=vector(params, "point"),
        normal=normal,
        x_axis=vector(params, "x_axis"),
        slab_mm=number(params, "slab", 0.0, low=0.0, high=500.0),
        slab_mode=choice(params, "mode", SLAB_MODES, "max"),
        window=window,
        size=size or None,
        quality=quality(params),
        output=output(params),
    )


def _size(params: Mapping[str, Any]) -> tuple[int, int]:
    raw = params.get("size")
    if raw is None or raw == "":
        return 512, 512
    parts = numbers(raw, "size", 2) if "," in _text(raw) else numbers(raw, "size", 1) * 2
    width, height = (int(p) for p in parts)
    if parts != (width, height) or not (16 <= width <= MAX_SIDE and 16 <= height <= MAX_SIDE):
        raise BadParameter(f"size must be whole numbers from 16 to {MAX_SIDE}, got {raw!r}")
    return width, height


def _clip_planes(params: Mapping[str, Any]) -> tuple[ClipPlaneSpec, ...]:
    raw = params.get("clipplane")
    if raw is None or raw == "":
        return ()
    if isinstance(raw, list | tuple) and raw and isinstance(raw[0], list | tuple | str):
        items: list[Any] = list(raw)
    else:
        items = [raw]
    if len(items) > MAX_CLIP_PLANES:
        raise BadParameter(f"at most {MAX_CLIP_PLANES} clip planes")
    planes = []
    for item in items:
        v = numbers(item, "clipplane", 6)
        planes.append(ClipPlaneSpec((v[0], v[1], v[2]), (v[3], v[4], v[5])))
    return tuple(planes)


def parse_volume(params: Mapping[str, Any], clip_planes: Sequence[Any] = ()) -> VolumeSpec:
    """``preset``, ``azimuth``, ``elevation``, ``roll``, ``zoom``, ``pan``, ``start``,
    ``parallel``, ``size``, ``quality``, ``clip`` (box), ``clipplane`` (repeatable), ``shift``,
    ``format``, ``jpeg_quality``. ``clip_planes`` are the repeated ``clipplane`` values of a
    query string."""
    clip_box = None
    if params.get("clip") not in (None, ""):
        v = numbers(params["clip"], "clip", 6)
        clip_box = ((v[0], v[1], v[2]), (v[3], v[4], v[5]))
    pan = (0.0, 0.0)
    if params.get("pan") not in (None, ""):
        px, py = numbers(params["pan"], "pan", 2)
        pan = (px, py)
    planes = _clip_planes({"clipplane": list(clip_planes)} if clip_planes else params)
    preset = params.get("preset")
    return VolumeSpec(
        preset=_text(preset) if preset not in (None, "") else None,
        azimuth=number(params, "azimuth", 0.0),
        elevation=number(params, "elevation", 0.0),
        roll=number(params, "roll", 0.0),
        zoom=number(params, "zoom", 1.0, low=0.05, high=50.0),
        pan=pan,
        start=choice(params, "start", START_VIEWS, "anterior"),
        parallel=flag(params, "parallel"),
        size=_size(params),
        quality=quality(params),
        clip_box=clip_box,
        clip_planes=planes,
        shift=number(params, "shift", 0.0, low=-5000.0, high=5000.0),
        output=output(params),
    )


def parse_isosurface(params: Mapping[str, Any]) -> IsosurfaceSpec:
    return IsosurfaceSpec(number(params, "level", 300.0),
                          integer(params, "step", 2, low=1, high=16))
