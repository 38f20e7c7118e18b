"""A series as one voxel array with its exact place in patient space.

:func:`build_volume` reads the frames (:mod:`.frames`), lays them out (:mod:`.layout`) and
fills one preallocated array slice by slice, so that building never holds the pixels twice.

Voxel values are the rescaled values (Hounsfield units for CT). They are stored as **int16**
when every Rescale Slope and Intercept is an integer and the values fit (CT: slope 1, HU from
-1024 to 3071, so 2 bytes per voxel and exact values); otherwise, or when a slice overflows
int16, or when :attr:`BuildOptions.float32` asks for it, as **float32**. The array is C-ordered
``(slices, rows, columns)`` and read-only: VTK wraps it without copying, and a volume shared by
several renderers can never be changed under them.

Index convention: voxel ``(i, j, k)`` is column ``i``, row ``j``, slice ``k``; the 4x4
:attr:`Volume.affine` maps ``(i, j, k, 1)`` to the patient position (LPS, mm) of that voxel's
centre. Its columns are the row direction times the column spacing, the column direction times
the row spacing, the slice step (with any gantry tilt) and the centre of voxel (0, 0, 0).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from consilium_rendering.errors import SeriesError, SeriesProblem
from consilium_rendering.frames import Frame, SeriesMeta, SeriesSource, decode_frame, read_frames
from consilium_rendering.layout import BuildOptions, SliceGap, SliceLayout, plan_layout

__all__ = [
    "BuildOptions",
    "BuildReport",
    "SeriesMeta",
    "SliceGap",
    "Volume",
    "Voxels",
    "build_volume",
    "volume_from_array",
]

Voxels = npt.NDArray[np.int16] | npt.NDArray[np.float32]
_F64 = npt.NDArray[np.float64]
_INT16 = np.iinfo(np.int16)


@dataclass(frozen=True)
class BuildReport:
    """What the build found and did; ``messages`` says it in words for the user."""

    acquired_slices: int
    slices: int
    spacing_mm: float
    """Slice spacing of the volume along the normal."""
    nominal_spacing_mm: float
    """Median gap between acquired slices."""
    min_gap_mm: float
    max_gap_mm: float
    regular: bool
    gaps: tuple[SliceGap, ...]
    interpolated: tuple[int, ...]
    """Volume slices made by interpolation rather than copied from an acquired slice."""
    tilt_deg: float
    dtype: str
    messages: tuple[str, ...] = ()

    @property
    def resampled(self) -> bool:
        return bool(self.interpolated) or not self.regular


@dataclass(frozen=True, eq=False)
class Volume:
    """Voxels ``(slices, rows, columns)`` and the affine that places them in patient space."""

    voxels: Voxels
    affine: _F64
    meta: SeriesMeta
    report: BuildReport
    value_range: tuple[float, float]
    _inverse: _F64 = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_inverse", np.linalg.inv(self.affine))

    @property
    def shape(self) -> tuple[int, int, int]:
        """Numpy shape: (slices, rows, columns)."""
        k, j, i = self.voxels.shape
        return k, j, i

    @property
    def dimensions(self) -> tuple[int, int, int]:
        """Voxel counts along (i, j, k), the order VTK uses."""
        k, j, i = self.voxels.shape
        return i, j, k

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size along i, j and along the slice normal (mm)."""
        a = self.affine[:3, :3]
        normal = np.cross(a[:, 0], a[:, 1])
        normal /= np.linalg.norm(normal)
        return (
            float(np.linalg.norm(a[:, 0])),
            float(np.linalg.norm(a[:, 1])),
            float(abs(a[:, 2] @ normal)),
        )

    @property
    def inverse_affine(self) -> _F64:
        """Patient (LPS, mm) -> continuous voxel index."""
        return self._inverse

    @property
    def nbytes(self) -> int:
        return int(self.voxels.nbytes)

    def index_to_patient(self, ijk: npt.ArrayLike) -> _F64:
        """Patient positions of voxel indices; ``ijk`` has shape (..., 3)."""
        points = np.asarray(ijk, dtype=np.float64)
        return points @ self.affine[:3, :3].T + self.affine[:3, 3]

    def patient_to_index(self, xyz: npt.ArrayLike) -> _F64:
        """Continuous voxel indices (i, j, k) of patient positions; ``xyz`` has shape (..., 3)."""
        points = np.asarray(xyz, dtype=np.float64)
        return points @ self._inverse[:3, :3].T + self._inverse[:3, 3]

    def corners(self) -> _F64:
        """The 8 corner voxel centres in patient space, shape (8, 3)."""
        i, j, k = (n - 1 for n in self.dimensions)
        box = np.array([[a, b, c] for a in (0, i) for b in (0, j) for c in (0, k)], np.float64)
        return self.index_to_patient(box)

    @property
    def center(self) -> tuple[float, float, float]:
        """Patient position of the centre of the voxel grid."""
        x, y, z = self.corners().mean(axis=0)
        return float(x), float(y), float(z)

    def value_at(self, xyz: npt.ArrayLike) -> float:
        """The voxel value nearest to one patient position (NaN outside the volume)."""
        index = np.rint(self.patient_to_index(xyz)).astype(np.int64)
        i, j, k = (int(v) for v in index)
        ni, nj, nk = self.dimensions
        if not (0 <= i < ni and 0 <= j < nj and 0 <= k < nk):
            return math.nan
        return float(self.voxels[k, j, i])


def build_volume(
    series: Sequence[SeriesSource], options: BuildOptions | None = None
) -> Volume:
    """Reconstruct ``series`` (datasets or file paths, any order) into a :class:`Volume`.

    Raises :class:`~consilium_rendering.errors.SeriesError` with a reason and a message for
    every series that cannot become a volume. See :mod:`.layout` for how spacing, missing
    slices and gantry tilt are decided and the module docstring for the voxel type.
    """
    options = options or BuildOptions()
    frames, meta = read_frames(series)
    layout = plan_layout(frames, options)
    voxels, value_range, dtype_note = _fill(layout, options)
    voxels.setflags(write=False)
    first = layout.frames[0]
    affine = np.eye(4)
    affine[:3, 0] = first.row_cosine * first.column_spacing
    affine[:3, 1] = first.column_cosine * first.row_spacing
    affine[:3, 2] = layout.step
    affine[:3, 3] = layout.origin
    report = _report(layout, voxels, dtype_note)
    return Volume(voxels, affine, meta, report, value_range)


def volume_from_array(
    voxels: npt.ArrayLike,
    affine: npt.ArrayLike,
    meta: SeriesMeta | None = None,
) -> Volume:
    """Wrap an existing ``(slices, rows, columns)`` array and its index -> patient affine."""
    array = np.asarray(voxels)
    if array.dtype != np.int16:
        array = array.astype(np.float32, copy=False)
    array = np.ascontiguousarray(array)
    if array.ndim != 3 or min(array.shape) < 2:
        raise SeriesError(
            SeriesProblem.SINGLE_SLICE, f"a volume needs a 3-D array of at least 2 voxels per "
            f"side, got shape {array.shape}"
        )
    matrix = np.asarray(affine, dtype=np.float64)
    if matrix.shape != (4, 4) or abs(float(np.linalg.det(matrix[:3, :3]))) < 1e-12:
        raise SeriesError(SeriesProblem.NO_GEOMETRY, "the affine must be an invertible 4x4 matrix")
    array.setflags(write=False)
    k = array.shape[0]
    spacing = float(np.linalg.norm(matrix[:3, 2]))
    report = BuildReport(k, k, spacing, spacing, spacing, spacing, True, (), (), 0.0,
                         str(array.dtype))
    value_range = (float(array.min()), float(array.max()))
    return Volume(array, matrix, meta or SeriesMeta("", "", "", ""), report, value_range)


# --------------------------------------------------------------------------- filling


def _integral(value: float) -> bool:
    return abs(value - round(value)) < 1e-6


class _Filler:
    """Decodes and rescales acquired frames, keeping the last two for interpolation."""

    def __init__(self, frames: list[Frame]) -> None:
        self._frames = frames
        self._cache: dict[int, npt.NDArray[Any]] = {}

    def rescaled(self, k: int, *, exact: bool) -> npt.NDArray[Any]:
        """Frame ``k`` in rescaled units: int32/int64 when ``exact`` (integer rescale), else
        float64."""
        cached = self._cache.get(k)
        if cached is not None:
            return cached
        frame = self._frames[k]
        raw = decode_frame(frame)
        values: npt.NDArray[Any]
        if exact:
            slope, intercept = round(frame.slope), round(frame.intercept)
            # int32 when no stored value can leave it (half the memory traffic of int64)
            small = raw.dtype.itemsize <= 2 and abs(slope) * 65536 + abs(intercept) < 2**31
            wide = np.int32 if small else np.int64
            values = raw.astype(wide)
            if slope != 1:
                values *= slope
            if intercept:
                values += intercept
        else:
            values = raw.astype(np.float64) * frame.slope + frame.intercept
        if len(self._cache) >= 2:
            self._cache.pop(min(self._cache))
        self._cache[k] = values
        return values


def _fill(layout: SliceLayout, options: BuildOptions) -> tuple[Voxels, tuple[float, float], str]:
    frames = layout.frames
    first = frames[0]
    exact = all(_integral(f.slope) and _integral(f.intercept) for f in frames)
    use_int16 = exact and not options.float32
    shape = (len(layout.sources), first.rows, first.columns)
    voxels: Voxels = np.empty(shape, np.int16) if use_int16 else np.empty(shape, np.float32)
    note = "int16 (integer rescale)" if use_int16 else "float32"
    filler = _Filler(frames)
    low, high = math.inf, -math.inf
    for m, source in enumerate(layout.sources):
        values = filler.rescaled(source.lower, exact=exact)
        if source.weight != 0.0:
            upper = filler.rescaled(source.upper, exact=exact)
            values = values * (1.0 - source.weight) + upper * source.weight
            if voxels.dtype == np.int16:
                values = np.rint(values)
        lo, hi = float(values.min()), float(values.max())
        low, high = min(low, lo), max(high, hi)
        if voxels.dtype == np.int16 and (lo < _INT16.min or hi > _INT16.max):
            # Rare (16-bit unsigned data with a large intercept): one float32 copy, once.
            voxels = np.asarray(voxels, dtype=np.float32)
            note = f"float32 (values {lo:g}..{hi:g} overflow int16)"
        voxels[m] = values
    if not exact and not options.float32:
        note = "float32 (non-integer rescale slope or intercept)"
    return voxels, (low, high), note


def _report(layout: SliceLayout, voxels: Voxels, dtype_note: str) -> BuildReport:
    messages: list[str] = []
    if layout.tilt_deg:
        messages.append(
            f"gantry tilt of {layout.tilt_deg:.2f} degrees: kept as a sheared voxel grid "
            "(affine), no resampling"
        )
    missing = [g for g in layout.gaps if g.missing > 0]
    for gap in missing:
        messages.append(
            f"{gap.missing} slice(s) missing after {gap.position_mm:.2f} mm along the normal "
            f"(gap {gap.gap_mm:.2f} mm, spacing {layout.nominal_spacing_mm:.2f} mm): filled by "
            "linear interpolation"
        )
    interpolated = layout.interpolated
    if layout.irregular:
        messages.append(
            f"irregular slice spacing ({layout.min_gap_mm:.2f} to {layout.max_gap_mm:.2f} mm): "
            f"resampled to {layout.spacing_mm:.3f} mm, {len(interpolated)} of "
            f"{len(layout.sources)} slices interpolated"
        )
    if not dtype_note.startswith("int16 (integer"):
        messages.append(f"voxels stored as {dtype_note}")
    return BuildReport(
        acquired_slices=len(layout.frames),
        slices=len(layout.sources),
        spacing_mm=layout.spacing_mm,
        nominal_spacing_mm=layout.nominal_spacing_mm,
        min_gap_mm=layout.min_gap_mm,
        max_gap_mm=layout.max_gap_mm,
        regular=layout.regular,
        gaps=tuple(layout.gaps),
        interpolated=tuple(interpolated),
        tilt_deg=layout.tilt_deg,
        dtype=str(voxels.dtype),
        messages=tuple(messages),
    )
