"""Synthetic series with shapes at known patient positions, as pydicom datasets.

Tests, benchmarks and a worker's self-check need series whose truth is known exactly: spheres,
ellipsoids and cylinders placed in patient coordinates (LPS, mm), sampled on any slice geometry
(orientation, spacing, gantry tilt, irregular or missing slices), written as CT/MR Image Storage
instances or as one Enhanced CT multi-frame instance. Edges are smoothed over about one pixel
(``soft_mm``) so that rendered surfaces do not show voxel stair-steps; ``soft_mm=0`` gives hard
edges.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import (
    UID,
    CTImageStorage,
    EnhancedCTImageStorage,
    ExplicitVRLittleEndian,
    MRImageStorage,
    generate_uid,
)
from pydicom.valuerep import format_number_as_ds

__all__ = [
    "Cylinder",
    "Ellipsoid",
    "PhantomGeometry",
    "Shape",
    "Sphere",
    "enhanced_ct_dataset",
    "phantom_series",
    "sample_shapes",
]

Vec3 = tuple[float, float, float]
_F64 = npt.NDArray[np.float64]
_F32 = npt.NDArray[np.float32]


def _ramp(signed_distance: _F64, soft_mm: float) -> _F64:
    """Coverage 1 inside, 0 outside, linear over ``soft_mm`` across the surface."""
    if soft_mm <= 0:
        return (signed_distance <= 0).astype(np.float64)
    return np.clip(0.5 - signed_distance / soft_mm, 0.0, 1.0)


@dataclass(frozen=True)
class Ellipsoid:
    """Axis-aligned (in patient space) ellipsoid of constant value."""

    center: Vec3
    radii: Vec3
    value: float

    def coverage(self, points: _F64, soft_mm: float) -> _F64:
        c, r = np.asarray(self.center), np.asarray(self.radii)
        q = (points - c) / r
        norm = np.sqrt(np.einsum("...i,...i->...", q, q))
        # Distance to the surface, approximated along the ray from the centre: exact for spheres.
        radius_along = np.linalg.norm(points - c, axis=-1) / np.maximum(norm, 1e-12)
        signed = (norm - 1.0) * np.where(norm > 1e-12, radius_along, min(self.radii))
        return _ramp(signed, soft_mm)


def Sphere(center: Vec3, radius: float, value: float) -> Ellipsoid:  # noqa: N802 (a shape)
    """A sphere: an ellipsoid with three equal radii."""
    return Ellipsoid(center, (radius, radius, radius), value)


@dataclass(frozen=True)
class Cylinder:
    """A solid cylinder (rod) between two end points."""

    start: Vec3
    end: Vec3
    radius: float
    value: float

    def coverage(self, points: _F64, soft_mm: float) -> _F64:
        a, b = np.asarray(self.start), np.asarray(self.end)
        axis = b - a
        length = float(np.linalg.norm(axis))
        axis = axis / length
        along = (points - a) @ axis
        radial = np.linalg.norm(points - a - np.multiply.outer(along, axis), axis=-1)
        signed = np.maximum(radial - self.radius, np.maximum(-along, along - length))
        return _ramp(signed, soft_mm)


Shape = Ellipsoid | Cylinder


@dataclass(frozen=True)
class PhantomGeometry:
    """Where the slices of a synthetic series lie."""

    rows: int = 64
    columns: int = 64
    slices: int = 64
    row_spacing: float = 1.0
    """Distance between rows (Pixel Spacing[0]), mm."""
    column_spacing: float = 1.0
    """Distance between columns (Pixel Spacing[1]), mm."""
    slice_spacing: float = 1.0
    """Distance between slice positions along ``slice_direction``, mm."""
    origin: Vec3 = (0.0, 0.0, 0.0)
    """Image Position (Patient) of the first slice."""
    row_cosine: Vec3 = (1.0, 0.0, 0.0)
    column_cosine: Vec3 = (0.0, 1.0, 0.0)
    slice_direction: Vec3 | None = None
    """Direction slice positions advance in; ``None``: the normal. A gantry-tilted series has
    tilted image planes while the table moves along z."""
    offsets: tuple[float, ...] | None = None
    """Explicit slice offsets (mm along ``slice_direction``); default ``k * slice_spacing``."""

    def normal(self) -> _F64:
        n = np.cross(self.row_cosine, self.column_cosine)
        return np.asarray(n / np.linalg.norm(n), dtype=np.float64)

    def positions(self) -> _F64:
        """Image Position (Patient) of every slice, shape (slices, 3)."""
        direction = np.asarray(
            self.slice_direction if self.slice_direction is not None else self.normal(),
            dtype=np.float64,
        )
        direction = direction / np.linalg.norm(direction)
        offsets = (
            np.asarray(self.offsets, dtype=np.float64)
            if self.offsets is not None
            else np.arange(self.slices, dtype=np.float64) * self.slice_spacing
        )
        return np.asarray(self.origin, dtype=np.float64) + np.multiply.outer(offsets, direction)

    def pixel_points(self, position: _F64) -> _F64:
        """Patient position of every pixel centre of the slice at ``position``: (rows, cols, 3)."""
        i = np.arange(self.columns, dtype=np.float64) * self.column_spacing
        j = np.arange(self.rows, dtype=np.float64) * self.row_spacing
        row, col = np.asarray(self.row_cosine), np.asarray(self.column_cosine)
        points: _F64 = position + np.multiply.outer(j, col)[:, None, :]
        points = points + np.multiply.outer(i, row)[None, :, :]
        return points


def sample_shapes(
    points: _F64, shapes: Sequence[Shape], background: float, soft_mm: float
) -> _F64:
    """Values of the scene at ``points`` (..., 3): later shapes are painted over earlier ones."""
    values = np.full(points.shape[:-1], background, dtype=np.float64)
    for shape in shapes:
        cover = shape.coverage(points, soft_mm)
        values += (shape.value - values) * cover
    return values


@dataclass(frozen=True)
class _Encoding:
    slope: float = 1.0
    intercept: float = -1024.0
    signed: bool = field(default=False)


def _ds(value: float) -> str:
    return format_number_as_ds(float(value))


def _stored(values: _F64, slope: float, intercept: float, signed: bool) -> npt.NDArray[np.int64]:
    stored = np.rint((values - intercept) / slope).astype(np.int64)
    lo, hi = (-32768, 32767) if signed else (0, 65535)
    return np.clip(stored, lo, hi)


def _common(ds: Dataset, modality: str, uid_seed: str, geometry: PhantomGeometry) -> None:
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.StudyInstanceUID = generate_uid(entropy_srcs=[uid_seed, "study"])
    ds.SeriesInstanceUID = generate_uid(entropy_srcs=[uid_seed, "series"])
    ds.FrameOfReferenceUID = generate_uid(entropy_srcs=[uid_seed, "frame-of-reference"])
    ds.Modality = modality
    ds.PatientName = "Phantom^Spheres"
    ds.PatientID = "PHANTOM"
    ds.StudyDate = "20240101"
    ds.SeriesNumber = 1
    ds.Rows = geometry.rows
    ds.Columns = geometry.columns
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15


def _meta(sop_class: UID, sop_uid: UID) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return meta


def phantom_series(
    geometry: PhantomGeometry,
    shapes: Sequence[Shape],
    *,
    background: float = -1000.0,
    modality: str = "CT",
    slope: float = 1.0,
    intercept: float = -1024.0,
    soft_mm: float | None = None,
    uid_seed: str = "consilium-phantom",
) -> list[Dataset]:
    """One single-frame instance per slice (CT or MR Image Storage), in acquisition order.

    Values are stored as ``round((value - intercept) / slope)`` in 16 bits (unsigned unless a
    stored value is negative). ``soft_mm`` defaults to the smallest pixel spacing.
    """
    soft = min(geometry.row_spacing, geometry.column_spacing) if soft_mm is None else soft_mm
    positions = geometry.positions()
    values = [
        sample_shapes(geometry.pixel_points(p), shapes, background, soft) for p in positions
    ]
    stored = [_stored(v, slope, intercept, True) for v in values]
    signed = any(int(s.min()) < 0 for s in stored)
    if not signed:
        stored = [_stored(v, slope, intercept, False) for v in values]
    sop_class = CTImageStorage if modality == "CT" else MRImageStorage
    out: list[Dataset] = []
    for k, (position, pixels) in enumerate(zip(positions, stored, strict=True)):
        sop_uid = generate_uid(entropy_srcs=[uid_seed, "instance", str(k)])
        ds = Dataset()
        ds.file_meta = _meta(sop_class, sop_uid)
        _common(ds, modality, uid_seed, geometry)
        ds.SOPClassUID = sop_class
        ds.SOPInstanceUID = sop_uid
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [_ds(v) for v in position]
        ds.ImageOrientationPatient = [
            _ds(v) for v in (*geometry.row_cosine, *geometry.column_cosine)
        ]
        ds.PixelSpacing = [_ds(geometry.row_spacing), _ds(geometry.column_spacing)]
        ds.SliceThickness = _ds(geometry.slice_spacing)
        ds.PixelRepresentation = 1 if signed else 0
        ds.RescaleSlope = _ds(slope)
        ds.RescaleIntercept = _ds(intercept)
        ds.RescaleType = "HU" if modality == "CT" else "US"
        ds.PixelData = pixels.astype("<i2" if signed else "<u2").tobytes()
        ds["PixelData"].VR = "OW"
        out.append(ds)
    return out


def enhanced_ct_dataset(
    geometry: PhantomGeometry,
    shapes: Sequence[Shape],
    *,
    background: float = -1000.0,
    intercept: float = -1024.0,
    frame_order: Sequence[int] | None = None,
    soft_mm: float | None = None,
    uid_seed: str = "consilium-enhanced-phantom",
) -> Dataset:
    """The same scene as one Enhanced CT instance: geometry in the functional groups.

    ``frame_order`` permutes the slices in the multi-frame object (to test sorting).
    """
    soft = min(geometry.row_spacing, geometry.column_spacing) if soft_mm is None else soft_mm
    positions = geometry.positions()
    order = list(frame_order) if frame_order is not None else list(range(len(positions)))
    sop_uid = generate_uid(entropy_srcs=[uid_seed, "instance"])
    ds = Dataset()
    ds.file_meta = _meta(EnhancedCTImageStorage, sop_uid)
    _common(ds, "CT", uid_seed, geometry)
    ds.SOPClassUID = EnhancedCTImageStorage
    ds.SOPInstanceUID = sop_uid
    ds.InstanceNumber = 1
    ds.NumberOfFrames = len(order)
    ds.PixelRepresentation = 0

    shared = Dataset()
    measures = Dataset()
    measures.PixelSpacing = [_ds(geometry.row_spacing), _ds(geometry.column_spacing)]
    measures.SliceThickness = _ds(geometry.slice_spacing)
    shared.PixelMeasuresSequence = DicomSequence([measures])
    orientation = Dataset()
    orientation.ImageOrientationPatient = [
        _ds(v) for v in (*geometry.row_cosine, *geometry.column_cosine)
    ]
    shared.PlaneOrientationSequence = DicomSequence([orientation])
    transform = Dataset()
    transform.RescaleSlope = "1"
    transform.RescaleIntercept = _ds(intercept)
    transform.RescaleType = "HU"
    shared.PixelValueTransformationSequence = DicomSequence([transform])
    ds.SharedFunctionalGroupsSequence = DicomSequence([shared])

    per_frame: list[Dataset] = []
    chunks: list[bytes] = []
    for number, k in enumerate(order):
        item = Dataset()
        plane = Dataset()
        plane.ImagePositionPatient = [_ds(v) for v in positions[k]]
        item.PlanePositionSequence = DicomSequence([plane])
        content = Dataset()
        content.InStackPositionNumber = k + 1
        content.FrameAcquisitionNumber = number + 1
        item.FrameContentSequence = DicomSequence([content])
        per_frame.append(item)
        values = sample_shapes(geometry.pixel_points(positions[k]), shapes, background, soft)
        chunks.append(_stored(values, 1.0, intercept, False).astype("<u2").tobytes())
    ds.PerFrameFunctionalGroupsSequence = DicomSequence(per_frame)
    ds.PixelData = b"".join(chunks)
    ds["PixelData"].VR = "OW"
    return ds

