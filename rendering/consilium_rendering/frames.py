"""Series input -> one record per image frame, with the geometry and rescale each frame carries.

A series arrives as pydicom datasets or file paths, single-frame (CT/MR Image Storage: one slice
per instance) or multi-frame (Enhanced CT/MR: the plane position of every frame in the
Per-Frame Functional Groups, orientation, pixel spacing and rescale usually in the Shared ones).
Both become :class:`Frame` records so that sorting and validation see one shape.

Only headers are read here. Files are read with large values deferred and decoded one frame at
a time later (:func:`decode_frame`), so the pixels of the series are never held twice.

Uncompressed little-endian pixel data (most CT and MR as stored) is read straight from its
place in the file, which the header read already knows (:class:`NativePixels`), instead of
pydicom parsing every file a second time to reach it: that halved a 300-slice CT's build
(bench/README.md, the regional link). The values are those of pydicom's decoder, unused high
bits corrected the same way; everything else (compressed, big endian, deflated, float) is
decoded by pydicom.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from pydicom import dcmread
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.pixels.utils import pixel_array
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from consilium_rendering.errors import SeriesError, SeriesProblem

__all__ = ["Frame", "NativePixels", "SeriesMeta", "SeriesSource", "decode_frame", "read_frames"]

SeriesSource = Dataset | str | os.PathLike[str]
"""One instance of a series: a dataset in memory or the path of a DICOM file."""

_F64 = npt.NDArray[np.float64]

_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
_LABEL_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.66.4": "Segmentation",
    "1.2.840.10008.5.1.4.1.1.66.7": "Label Map Segmentation",
}
_DEFER = "64 KB"  # read headers of files without their pixel data
_NATIVE_SYNTAXES = frozenset({ExplicitVRLittleEndian, ImplicitVRLittleEndian})
_UNDEFINED_LENGTH = 0xFFFFFFFF


@dataclass(frozen=True)
class NativePixels:
    """Where a file's uncompressed little-endian pixel data lies, to read it without pydicom."""

    offset: int
    """File position of the first frame's first pixel."""
    dtype: str
    """numpy dtype of one stored value (``<i2``, ``<u2``, ``i1``, ``u1``)."""
    unused_bits: int
    """Bits Allocated - Bits Stored: high bits that are not part of the value."""


@dataclass(frozen=True, eq=False)
class Frame:
    """One 2-D image of the series with its own geometry (patient LPS, mm) and rescale."""

    source: Dataset | Path
    index: int | None
    """Frame number (0-based) inside a multi-frame instance; ``None`` for a single-frame one."""
    instance_uid: str
    position: _F64
    """Image Position (Patient): the centre of the first transmitted pixel."""
    row_cosine: _F64
    """Direction of increasing column index (first three values of Image Orientation)."""
    column_cosine: _F64
    """Direction of increasing row index (last three values)."""
    row_spacing: float
    """Distance between rows (first value of Pixel Spacing)."""
    column_spacing: float
    """Distance between columns (second value of Pixel Spacing)."""
    rows: int
    columns: int
    slope: float
    intercept: float
    bits_stored: int
    signed: bool
    native: NativePixels | None = None
    """Set when the pixels can be read straight from the file (see the module docstring)."""

    def describe(self) -> str:
        """The frame as a message names it."""
        where = f" frame {self.index + 1}" if self.index is not None else ""
        return f"instance {self.instance_uid or '(no SOP Instance UID)'}{where}"


@dataclass(frozen=True)
class SeriesMeta:
    """What the series says about itself (taken from its first instance)."""

    modality: str
    series_instance_uid: str
    frame_of_reference_uid: str
    units: str
    """``HU`` for CT, else the Rescale Type if there is one (``US``: unspecified)."""


def read_frames(sources: Sequence[SeriesSource]) -> tuple[list[Frame], SeriesMeta]:
    """Every frame of ``sources`` in input order, or :class:`SeriesError` naming the problem."""
    if not sources:
        raise SeriesError(SeriesProblem.EMPTY, "the series is empty: no instances were given")
    frames: list[Frame] = []
    meta: SeriesMeta | None = None
    series_uids: set[str] = set()
    frame_uids: set[str] = set()
    for source in sources:
        ds, origin = _header(source)
        _check_image(ds)
        series_uids.add(str(ds.get("SeriesInstanceUID", "")))
        frame_uids.add(_frame_of_reference(ds))
        if meta is None:
            meta = _series_meta(ds)
        frames.extend(_frames_of(ds, origin))
    if len(series_uids) > 1:
        raise SeriesError(
            SeriesProblem.MIXED_SERIES,
            f"instances of {len(series_uids)} different series were given together; "
            "build one volume per series",
        )
    if len(frame_uids) > 1:
        raise SeriesError(
            SeriesProblem.MIXED_SERIES,
            "the instances use different frames of reference; their positions cannot be "
            "combined into one volume",
        )
    assert meta is not None
    return frames, meta


def decode_frame(frame: Frame) -> npt.NDArray[Any]:
    """The stored values of one frame, shape (rows, columns), or :class:`SeriesError`."""
    if frame.native is not None and isinstance(frame.source, Path):
        return _read_native(frame, frame.native, frame.source)
    source: Dataset | str = frame.source if isinstance(frame.source, Dataset) else str(
        frame.source
    )
    try:
        # pydicom.pixels.pixel_array (unlike Dataset.pixel_array) keeps no decoded copy on the
        # dataset: the caller's datasets stay as large as they were.
        if frame.index is None:
            array = pixel_array(source)
        else:
            array = pixel_array(source, index=frame.index)
    except Exception as exc:  # every decoder failure is the same answer to the user
        raise SeriesError(
            SeriesProblem.UNSUPPORTED_PIXELS,
            f"cannot decode the pixel data of {frame.describe()}: {exc}",
            instance_uid=frame.instance_uid,
        ) from exc
    if array.ndim == 3 and array.shape[0] == 1:
        array = array[0]
    if array.shape != (frame.rows, frame.columns):
        raise SeriesError(
            SeriesProblem.UNSUPPORTED_PIXELS,
            f"{frame.describe()} decoded to shape {array.shape}, expected "
            f"({frame.rows}, {frame.columns})",
            instance_uid=frame.instance_uid,
        )
    return array


def _read_native(frame: Frame, native: NativePixels, path: Path) -> npt.NDArray[Any]:
    count = frame.rows * frame.columns
    dtype = np.dtype(native.dtype)
    offset = native.offset + (frame.index or 0) * count * dtype.itemsize
    try:
        array = np.fromfile(path, dtype=dtype, count=count, offset=offset)
        if array.size != count:
            raise ValueError(f"the file holds {array.size} of its {count} values")
    except (OSError, ValueError) as exc:
        raise SeriesError(
            SeriesProblem.UNSUPPORTED_PIXELS,
            f"cannot read the pixel data of {frame.describe()}: {exc}",
            instance_uid=frame.instance_uid,
        ) from exc
    if native.unused_bits:  # as pydicom does: a signed shift extends the sign, else masks
        np.left_shift(array, native.unused_bits, out=array)
        np.right_shift(array, native.unused_bits, out=array)
    return array.reshape(frame.rows, frame.columns)


def _native(ds: Dataset) -> NativePixels | None:
    """Where the deferred pixel data of a file read with ``defer_size`` lies, when it is
    uncompressed little-endian grayscale of 8 or 16 bits; else ``None`` (pydicom decodes)."""
    meta = getattr(ds, "file_meta", None)
    syntax = meta.get("TransferSyntaxUID") if meta is not None else None
    if syntax not in _NATIVE_SYNTAXES:
        return None
    raw = ds.get_item(0x7FE00010, keep_deferred=True)
    if not isinstance(raw, RawDataElement) or raw.value is not None:
        return None  # not deferred (small): pydicom has it in memory already
    allocated = _int(ds, "BitsAllocated", 0)
    stored = _int(ds, "BitsStored", allocated)
    if allocated not in (8, 16) or not 0 < stored <= allocated:
        return None
    needed = _int(ds, "Rows", 0) * _int(ds, "Columns", 0) * _int(ds, "NumberOfFrames", 1)
    if raw.length == _UNDEFINED_LENGTH or raw.length < needed * allocated // 8:
        return None  # pydicom says what is wrong with it
    kind = "i" if _int(ds, "PixelRepresentation", 0) == 1 else "u"
    dtype = f"{kind}1" if allocated == 8 else f"<{kind}2"
    return NativePixels(raw.value_tell, dtype, allocated - stored)


# --------------------------------------------------------------------------- headers


def _header(source: SeriesSource) -> tuple[Dataset, Dataset | Path]:
    if isinstance(source, Dataset):
        return source, source
    path = Path(source)
    try:
        try:
            ds = dcmread(path, defer_size=_DEFER)
        except InvalidDicomError as exc:
            # A bare dataset without preamble and file meta is still DICOM; anything forced
            # open that does not even name its SOP class is not.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # guesses about a file that may be no DICOM
                ds = dcmread(path, defer_size=_DEFER, force=True)
            if "SOPClassUID" not in ds:
                raise SeriesError(
                    SeriesProblem.UNREADABLE, f"{path.name} cannot be read as DICOM: {exc}"
                ) from exc
    except (InvalidDicomError, OSError, EOFError, ValueError, TypeError, KeyError,
            AttributeError, IndexError) as exc:
        raise SeriesError(
            SeriesProblem.UNREADABLE, f"{path.name} cannot be read as DICOM: {exc}"
        ) from exc
    return ds, path


def _uid(ds: Dataset) -> str:
    return str(ds.get("SOPInstanceUID", ""))


def _label(ds: Dataset) -> str:
    """How messages name an instance: its SOP class and instance UID, as far as known."""
    sop_class = ds.get("SOPClassUID")
    kind = str(getattr(sop_class, "name", sop_class)) if sop_class else "an instance"
    uid = _uid(ds)
    return f"{kind} {uid}" if uid else f"{kind} without SOP Instance UID"


def _check_image(ds: Dataset) -> None:
    uid = _uid(ds)
    if not any(keyword in ds for keyword in _PIXEL_KEYWORDS):
        raise SeriesError(
            SeriesProblem.NOT_IMAGE,
            f"{_label(ds)} has no pixel data: it is not an image and cannot be "
            "reconstructed",
            instance_uid=uid,
        )
    label = _LABEL_CLASSES.get(str(ds.get("SOPClassUID", "")))
    if label is not None:
        raise SeriesError(
            SeriesProblem.NOT_IMAGE,
            f"{label} {uid or '(no SOP Instance UID)'} is a label object, not an image "
            "series; render its source series",
            instance_uid=uid,
        )
    samples = _int(ds, "SamplesPerPixel", 1)
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2"))
    if samples != 1 or not photometric.startswith("MONOCHROME"):
        raise SeriesError(
            SeriesProblem.UNSUPPORTED_PIXELS,
            f"{_label(ds)} is a colour image ({photometric}, {samples} samples per pixel); "
            "a volume needs grayscale slices",
            instance_uid=uid,
        )


def _int(ds: Dataset, keyword: str, default: int) -> int:
    try:
        value = ds.get(keyword, None)
        return default if value is None or value == "" else int(value)
    except (TypeError, ValueError):
        return default


def _frame_of_reference(ds: Dataset) -> str:
    return str(ds.get("FrameOfReferenceUID", ""))


def _series_meta(ds: Dataset) -> SeriesMeta:
    modality = str(ds.get("Modality", ""))
    rescale_type = str(ds.get("RescaleType", ""))
    shared = _first_item(ds, "SharedFunctionalGroupsSequence")
    transform = _first_item(shared, "PixelValueTransformationSequence") if shared else None
    if not rescale_type and transform is not None:
        rescale_type = str(transform.get("RescaleType", ""))
    units = "HU" if modality == "CT" else rescale_type
    return SeriesMeta(modality, str(ds.get("SeriesInstanceUID", "")), _frame_of_reference(ds),
                      units)


def _first_item(ds: Dataset | None, keyword: str) -> Dataset | None:
    if ds is None:
        return None
    seq = ds.get(keyword)
    if not seq:
        return None
    item = seq[0]
    return item if isinstance(item, Dataset) else None


def _vector(value: object, length: int, what: str, ds: Dataset) -> _F64:
    uid = _uid(ds)
    try:
        items = list(value)  # type: ignore[call-overload]
        vector = np.array([float(v) for v in items], dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise SeriesError(
            SeriesProblem.NO_GEOMETRY,
            f"{_label(ds)}: {what} is malformed ({value!r})",
            instance_uid=uid,
        ) from exc
    if vector.shape != (length,) or not np.all(np.isfinite(vector)):
        raise SeriesError(
            SeriesProblem.NO_GEOMETRY,
            f"{_label(ds)}: {what} must hold {length} numbers, has {value!r}",
            instance_uid=uid,
        )
    return vector


def _lookup(keyword: str, sequence: str, items: Sequence[Dataset | None], top: Dataset) -> object:
    """``keyword`` from the first functional group holding it, else from the top level."""
    for group in items:
        inner = _first_item(group, sequence)
        if inner is not None and keyword in inner:
            return inner.get(keyword)
    return top.get(keyword)


def _frames_of(ds: Dataset, origin: Dataset | Path) -> list[Frame]:
    uid = _uid(ds)
    count = _int(ds, "NumberOfFrames", 1)
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    shared = _first_item(ds, "SharedFunctionalGroupsSequence")
    if count > 1 and not per_frame:
        raise SeriesError(
            SeriesProblem.UNSUPPORTED_MULTIFRAME,
            f"{_label(ds)} has {count} frames but no per-frame plane positions "
            "(Per-Frame Functional Groups); it cannot be placed in patient space",
            instance_uid=uid,
        )
    if per_frame is not None and len(per_frame) != count:
        raise SeriesError(
            SeriesProblem.NO_GEOMETRY,
            f"{_label(ds)} declares {count} frames but has {len(per_frame)} per-frame "
            "functional groups",
            instance_uid=uid,
        )
    rows, columns = _int(ds, "Rows", 0), _int(ds, "Columns", 0)
    if rows <= 0 or columns <= 0:
        raise SeriesError(
            SeriesProblem.NOT_IMAGE,
            f"{_label(ds)} has no image size (Rows/Columns)",
            instance_uid=uid,
        )
    bits_stored = _int(ds, "BitsStored", _int(ds, "BitsAllocated", 16))
    signed = _int(ds, "PixelRepresentation", 0) == 1
    native = _native(ds) if isinstance(origin, Path) else None
    frames: list[Frame] = []
    for index in range(count):
        item = per_frame[index] if per_frame else None
        groups = (item, shared)
        position = _lookup("ImagePositionPatient", "PlanePositionSequence", groups, ds)
        orientation = _lookup("ImageOrientationPatient", "PlaneOrientationSequence", groups, ds)
        spacing = _lookup("PixelSpacing", "PixelMeasuresSequence", groups, ds)
        for value, what in ((position, "Image Position (Patient)"),
                            (orientation, "Image Orientation (Patient)"),
                            (spacing, "Pixel Spacing")):
            if value is None or value == "":
                raise SeriesError(
                    SeriesProblem.NO_GEOMETRY,
                    f"{_label(ds)} has no {what}: its slices cannot be placed in "
                    "patient space",
                    instance_uid=uid,
                )
        iop = _vector(orientation, 6, "Image Orientation (Patient)", ds)
        row_cos, col_cos = _unit(iop[:3], ds), _unit(iop[3:], ds)
        if abs(float(np.dot(row_cos, col_cos))) > 1e-3:
            raise SeriesError(
                SeriesProblem.NO_GEOMETRY,
                f"{_label(ds)}: Image Orientation (Patient) rows and columns are not orthogonal",
                instance_uid=uid,
            )
        pixel_spacing = _vector(spacing, 2, "Pixel Spacing", ds)
        if np.any(pixel_spacing <= 0):
            raise SeriesError(
                SeriesProblem.NO_GEOMETRY,
                f"{_label(ds)}: Pixel Spacing must be positive, is {list(pixel_spacing)}",
                instance_uid=uid,
            )
        slope = _float(_lookup("RescaleSlope", "PixelValueTransformationSequence", groups, ds), 1.0)
        intercept = _float(
            _lookup("RescaleIntercept", "PixelValueTransformationSequence", groups, ds), 0.0
        )
        if slope == 0.0:
            slope = 1.0  # a zero slope is an encoder bug; the stored values are the best guess
        frames.append(
            Frame(
                source=origin,
                index=index if count > 1 or per_frame else None,
                instance_uid=uid,
                position=_vector(position, 3, "Image Position (Patient)", ds),
                row_cosine=row_cos,
                column_cosine=col_cos,
                row_spacing=float(pixel_spacing[0]),
                column_spacing=float(pixel_spacing[1]),
                rows=rows,
                columns=columns,
                slope=slope,
                intercept=intercept,
                bits_stored=bits_stored,
                signed=signed,
                native=native,
            )
        )
    return frames


def _unit(vector: _F64, ds: Dataset) -> _F64:
    norm = float(np.linalg.norm(vector))
    if not math.isfinite(norm) or norm < 1e-6:
        uid = _uid(ds)
        raise SeriesError(
            SeriesProblem.NO_GEOMETRY,
            f"{_label(ds)}: Image Orientation (Patient) has a zero direction",
            instance_uid=uid,
        )
    return vector / norm


def _float(value: object, default: float) -> float:
    if value is None or value == "":
        return default
    try:
        result = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return default
    return result if math.isfinite(result) else default
