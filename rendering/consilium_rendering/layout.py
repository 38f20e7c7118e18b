"""Where the slices of a series lie: sort along the normal, spacing, gaps, gantry tilt.

The decisions, in the order they are taken:

1. Every slice must share size, pixel spacing and orientation (else ``MIXED_SIZE`` or
   ``MIXED_ORIENTATION``); a volume needs at least two slices (``SINGLE_SLICE``).
2. Slices are sorted by their distance along the slice normal (row cosine x column cosine):
   Instance Number and file order are never trusted. Output slice 0 is the one lowest along the
   normal, so the voxel grid is right-handed.
3. The positions must lie on one line (``NOT_COLLINEAR`` otherwise). When that line is not the
   normal the series has a gantry tilt: the tilt is kept in the affine (the third axis is the
   real slice-to-slice step, a shear) and nothing is resampled, so every voxel stays where the
   scanner put it. Beyond :attr:`BuildOptions.max_tilt_deg` the series is refused
   (``EXCESSIVE_TILT``): that is no tilt but a broken header.
4. Spacing is regular when every gap is within the tolerance of the median gap; the grid then is
   the acquired slices themselves. Two slices closer than a tenth of the median gap are
   duplicates (several phases or acquisitions in one series): refused (``DUPLICATE_POSITIONS``).
5. Missing slices or irregular spacing: when the largest gap is at most
   :attr:`BuildOptions.max_gap_factor` times the median gap, the volume is resampled onto a
   regular grid at the median spacing from the first to the last slice, by linear interpolation
   between the two acquired neighbours. Grid positions that coincide with an acquired slice
   (all of them when slices are merely missing) copy it unchanged; the others are listed as
   interpolated in the report. A larger gap is refused (``LARGE_GAP``): interpolating across it
   would invent anatomy. Keeping per-slice positions instead was rejected because every
   consumer (reslicing, ray casting, isosurfaces) needs a regular grid, and the report makes
   the resampling visible to the user.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from consilium_rendering.errors import SeriesError, SeriesProblem
from consilium_rendering.frames import Frame

__all__ = ["BuildOptions", "SliceGap", "SliceLayout", "SliceSource", "plan_layout"]

_F64 = npt.NDArray[np.float64]

_ORIENTATION_TOLERANCE = 1e-3  # difference of direction cosines still "the same orientation"
_SPACING_RELATIVE_TOLERANCE = 1e-3  # pixel spacing of two slices still "the same"
_DUPLICATE_FRACTION = 0.1  # gaps below this fraction of the median gap are duplicates


@dataclass(frozen=True)
class BuildOptions:
    """How strict the volume build is; the defaults suit diagnostic CT and MR."""

    spacing_tolerance: float = 0.01
    """Relative deviation from the median gap still counted as regular spacing."""
    spacing_tolerance_mm: float = 0.01
    """Absolute floor of that tolerance (DS values are rounded by scanners)."""
    max_gap_factor: float = 3.0
    """Largest gap, in median gaps, that is interpolated (3: up to two missing slices)."""
    max_tilt_deg: float = 45.0
    """Largest angle between slice direction and slice normal accepted as a gantry tilt."""
    collinearity_tolerance: float = 0.1
    """Largest off-line distance of a slice position, as a fraction of the pixel spacing."""
    max_voxels: int | None = None
    """Refuse (``TOO_LARGE``) a volume with more voxels than this; ``None``: no limit."""
    max_frame_pixels: int | None = None
    """Refuse (``TOO_LARGE``) slices of more rows x columns than this, before any is decoded
    (a decoder allocates what a header declares); ``None``: no limit."""
    float32: bool = False
    """Always store float32 voxels; by default int16 when the rescaled values allow it."""


@dataclass(frozen=True)
class SliceGap:
    """A gap larger than the regular spacing between two acquired slices."""

    position_mm: float
    """Distance along the normal of the slice before the gap."""
    gap_mm: float
    missing: int
    """Slices the gap stands for (0 when the spacing is merely irregular)."""


@dataclass(frozen=True)
class SliceSource:
    """How one output slice is made from the sorted acquired frames."""

    lower: int
    upper: int
    weight: float
    """Weight of ``upper``; 0 means a copy of ``lower``."""


@dataclass(frozen=True, eq=False)
class SliceLayout:
    """The regular grid the volume is built on and how each of its slices is obtained."""

    frames: list[Frame]
    """Acquired frames sorted along the normal."""
    origin: _F64
    """Patient position of voxel (0, 0, 0)."""
    step: _F64
    """Patient vector from one output slice to the next (with the tilt, if any)."""
    spacing_mm: float
    """Output slice spacing along the normal."""
    nominal_spacing_mm: float
    """Median gap between acquired slices."""
    sources: list[SliceSource]
    gaps: list[SliceGap]
    min_gap_mm: float
    max_gap_mm: float
    regular: bool
    """Every gap equals the median gap (within the tolerance)."""
    irregular: bool
    """Some gap is not a whole multiple of the median gap (not just missing slices)."""
    tilt_deg: float

    @property
    def interpolated(self) -> list[int]:
        return [m for m, source in enumerate(self.sources) if source.weight != 0.0]


def plan_layout(frames: Sequence[Frame], options: BuildOptions) -> SliceLayout:
    """Sort, check and grid ``frames`` as the module docstring describes."""
    _check_consistent(frames)
    if len(frames) < 2:
        raise SeriesError(
            SeriesProblem.SINGLE_SLICE,
            "the series has a single slice: a volume (MPR, 3D) needs at least two",
            instance_uid=frames[0].instance_uid if frames else "",
        )
    first = frames[0]
    normal = np.cross(first.row_cosine, first.column_cosine)
    normal /= np.linalg.norm(normal)
    positions = np.array([f.position for f in frames], dtype=np.float64)
    distance = positions @ normal
    order = np.argsort(distance, kind="stable")
    ordered = [frames[int(i)] for i in order]
    positions, distance = positions[order], distance[order]
    gaps = np.diff(distance)
    nominal = float(np.median(gaps))
    _check_duplicates(ordered, distance, gaps, nominal)

    pixel = min(first.row_spacing, first.column_spacing)
    direction, tilt = _slice_direction(ordered, positions, distance, normal, pixel, options)

    tolerance = max(options.spacing_tolerance_mm, options.spacing_tolerance * nominal)
    regular = bool(np.all(np.abs(gaps - nominal) <= tolerance))
    irregular = bool(np.any(np.abs(gaps - np.rint(gaps / nominal) * nominal) > tolerance))
    gap_list = [
        SliceGap(float(distance[k]), float(g), max(0, round(float(g) / nominal) - 1))
        for k, g in enumerate(gaps)
        if g > nominal + tolerance
    ]
    span = float(distance[-1] - distance[0])
    if regular:
        count = len(ordered)
        sources = [SliceSource(k, k, 0.0) for k in range(count)]
    else:
        largest = float(gaps.max())
        if largest > options.max_gap_factor * nominal + tolerance:
            k = int(np.argmax(gaps))
            raise SeriesError(
                SeriesProblem.LARGE_GAP,
                f"a gap of {largest:.2f} mm between slices at {distance[k]:.2f} and "
                f"{distance[k + 1]:.2f} mm along the normal, where the spacing is "
                f"{nominal:.2f} mm (about {round(largest / nominal) - 1} slices missing); more "
                f"than {options.max_gap_factor:g} times the spacing cannot be interpolated "
                "honestly: complete the series",
                instance_uid=ordered[k].instance_uid,
            )
        count = round(span / nominal) + 1
        sources = _resample_sources(distance, span / (count - 1), count, tolerance)
    spacing = span / (count - 1)
    _check_size(first, count, options)
    return SliceLayout(
        frames=ordered,
        origin=positions[0].copy(),
        step=direction * spacing,
        spacing_mm=spacing,
        nominal_spacing_mm=nominal,
        sources=sources,
        gaps=gap_list,
        min_gap_mm=float(gaps.min()),
        max_gap_mm=float(gaps.max()),
        regular=regular,
        irregular=irregular,
        tilt_deg=tilt,
    )


def _check_consistent(frames: Sequence[Frame]) -> None:
    if not frames:
        raise SeriesError(SeriesProblem.EMPTY, "the series holds no image frames")
    first = frames[0]
    for frame in frames[1:]:
        if (frame.rows, frame.columns) != (first.rows, first.columns):
            raise SeriesError(
                SeriesProblem.MIXED_SIZE,
                f"slices of different sizes: {frame.describe()} is {frame.columns}x{frame.rows},"
                f" {first.describe()} is {first.columns}x{first.rows}",
                instance_uid=frame.instance_uid,
            )
        for mine, theirs in ((frame.row_spacing, first.row_spacing),
                             (frame.column_spacing, first.column_spacing)):
            if abs(mine - theirs) > _SPACING_RELATIVE_TOLERANCE * theirs:
                raise SeriesError(
                    SeriesProblem.MIXED_SIZE,
                    f"slices with different pixel spacing: {frame.describe()} has "
                    f"{frame.row_spacing:g}/{frame.column_spacing:g} mm, {first.describe()} "
                    f"{first.row_spacing:g}/{first.column_spacing:g} mm",
                    instance_uid=frame.instance_uid,
                )
        if (np.max(np.abs(frame.row_cosine - first.row_cosine)) > _ORIENTATION_TOLERANCE
                or np.max(np.abs(frame.column_cosine - first.column_cosine))
                > _ORIENTATION_TOLERANCE):
            raise SeriesError(
                SeriesProblem.MIXED_ORIENTATION,
                f"slices with different orientations: {frame.describe()} is oriented "
                f"{_cosines(frame)}, {first.describe()} {_cosines(first)}; a localizer or a "
                "second stack is mixed into the series",
                instance_uid=frame.instance_uid,
            )


def _cosines(frame: Frame) -> str:
    values = [*frame.row_cosine, *frame.column_cosine]
    return "[" + ", ".join(f"{v:.3f}" for v in values) + "]"


def _check_duplicates(frames: list[Frame], distance: _F64, gaps: _F64, nominal: float) -> None:
    limit = max(_DUPLICATE_FRACTION * nominal, 1e-3)
    close = np.flatnonzero(gaps < limit)
    if close.size:
        k = int(close[0])
        raise SeriesError(
            SeriesProblem.DUPLICATE_POSITIONS,
            f"slices share positions ({close.size} pair(s) closer than {limit:.2f} mm; the first"
            f" at {distance[k]:.2f} mm along the normal: {frames[k].describe()} and "
            f"{frames[k + 1].describe()}); the series holds several phases or acquisitions: "
            "split it before building a volume",
            instance_uid=frames[k + 1].instance_uid,
        )


def _slice_direction(
    frames: list[Frame],
    positions: _F64,
    distance: _F64,
    normal: _F64,
    pixel_mm: float,
    options: BuildOptions,
) -> tuple[_F64, float]:
    """Unit-normal-distance slice direction ``t`` (``t . normal == 1``) and the tilt angle."""
    centred = distance - distance.mean()
    t = (centred @ (positions - positions.mean(axis=0))) / float(centred @ centred)
    intercept = positions.mean(axis=0) - distance.mean() * t
    residual = np.linalg.norm(positions - (intercept + np.outer(distance, t)), axis=1)
    limit = options.collinearity_tolerance * pixel_mm
    worst = int(np.argmax(residual))
    if residual[worst] > limit:
        raise SeriesError(
            SeriesProblem.NOT_COLLINEAR,
            f"slice positions do not lie on one line: {frames[worst].describe()} is "
            f"{residual[worst]:.2f} mm off it (allowed {limit:.2f} mm)",
            instance_uid=frames[worst].instance_uid,
        )
    in_plane = t - float(t @ normal) * normal
    drift = float(np.linalg.norm(in_plane)) * float(distance[-1] - distance[0])
    if drift <= options.spacing_tolerance_mm:
        return normal.copy(), 0.0  # no tilt: keep the grid exactly orthogonal
    tilt = math.degrees(math.atan2(float(np.linalg.norm(in_plane)), float(t @ normal)))
    if tilt > options.max_tilt_deg:
        raise SeriesError(
            SeriesProblem.EXCESSIVE_TILT,
            f"the slices advance {tilt:.1f} degrees away from their normal; more than "
            f"{options.max_tilt_deg:g} degrees is not a gantry tilt but inconsistent geometry",
            instance_uid=frames[0].instance_uid,
        )
    return normal + in_plane, tilt


def _resample_sources(
    distance: _F64, spacing: float, count: int, tolerance: float
) -> list[SliceSource]:
    sources: list[SliceSource] = []
    last = len(distance) - 1
    for m in range(count):
        d = float(distance[0]) + m * spacing
        k = min(max(int(np.searchsorted(distance, d, side="right")) - 1, 0), last - 1)
        lower, upper = float(distance[k]), float(distance[k + 1])
        if abs(d - lower) <= tolerance:
            sources.append(SliceSource(k, k, 0.0))
        elif abs(d - upper) <= tolerance:
            sources.append(SliceSource(k + 1, k + 1, 0.0))
        else:
            sources.append(SliceSource(k, k + 1, (d - lower) / (upper - lower)))
    return sources


def _check_size(first: Frame, count: int, options: BuildOptions) -> None:
    pixels = first.rows * first.columns
    if options.max_frame_pixels is not None and pixels > options.max_frame_pixels:
        raise SeriesError(
            SeriesProblem.TOO_LARGE,
            f"slices of {first.columns}x{first.rows} pixels: more than the "
            f"{options.max_frame_pixels:,} allowed per slice",
            instance_uid=first.instance_uid,
        )
    voxels = pixels * count
    if options.max_voxels is not None and voxels > options.max_voxels:
        raise SeriesError(
            SeriesProblem.TOO_LARGE,
            f"the volume would hold {voxels:,} voxels ({first.columns}x{first.rows}x{count}), "
            f"more than the {options.max_voxels:,} allowed",
        )
