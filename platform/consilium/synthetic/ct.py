"""Synthetic chest CT series: the chest phantom (:mod:`.chest`) wrapped in CT Image Storage
datasets, with deterministic UIDs where asked.

Pixels are signed 16-bit Hounsfield units (PixelRepresentation 1, RescaleSlope 1,
RescaleIntercept 0), so ``ds.pixel_array`` is the HU image, clipped to [-1024, 3071].
Geometry is head-first supine in LPS: columns run to the patient's left (+x), rows to posterior
(+y); InstanceNumber 1 is the most superior slice and z decreases by the slice thickness.

Command line::

    python -m consilium.synthetic OUT_DIR --slices 300 --patient-id P1 --name "Иванов^Иван"
"""

from __future__ import annotations

import argparse
import datetime as dt
import re
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import UID, CTImageStorage, generate_uid

from consilium.archive.dicomfile import file_meta
from consilium.synthetic.chest import ChestPhantom
from consilium.synthetic.instances import PatientSpec, StudySpec

__all__ = ["generate_ct_series", "main", "make_study_uid", "write_ct_series"]

MANUFACTURER = "Consilium Phantom"

_DATE_RE = re.compile(r"^\d{8}$")
_TIME_RE = re.compile(r"^(\d{2})(\d{2})?(\d{2})?(?:\.(\d{1,6}))?$")


def _uid(uid_seed: str | None, *parts: str) -> UID:
    if uid_seed is None:
        return generate_uid()
    return generate_uid(entropy_srcs=[uid_seed, *parts])


def make_study_uid(study: StudySpec, uid_seed: str | None = None) -> UID:
    """A StudyInstanceUID for ``study``: random, or derived from ``uid_seed`` and the study."""
    return _uid(
        uid_seed,
        "study",
        study.patient.patient_id,
        study.study_date,
        study.study_time,
        study.accession,
        study.description,
    )


def _parse_time(value: str) -> dt.time:
    match = _TIME_RE.match(value)
    if match is None:
        raise ValueError(f"study_time must be HHMMSS[.ffffff], got {value!r}")
    hh, mm, ss, frac = match.groups()
    micro = int((frac or "0").ljust(6, "0"))
    return dt.time(int(hh), int(mm or 0), int(ss or 0), micro)


def _parse_date(value: str, what: str) -> dt.date:
    if not _DATE_RE.match(value):
        raise ValueError(f"{what} must be YYYYMMDD, got {value!r}")
    return dt.datetime.strptime(value, "%Y%m%d").date()


def _dicom_time(moment: dt.datetime) -> str:
    text = moment.strftime("%H%M%S")
    return f"{text}.{moment.microsecond:06d}" if moment.microsecond else text


def _age(birth: dt.date, on: dt.date) -> str:
    years = on.year - birth.year - ((on.month, on.day) < (birth.month, birth.day))
    return f"{max(years, 0):03d}Y"


def _ds(value: float) -> float:
    """A float whose repr fits a DS value (16 characters)."""
    return round(value, 4) + 0.0


def _check_length(what: str, value: str, limit: int) -> None:
    if len(value) > limit:
        raise ValueError(f"{what} is limited to {limit} characters, got {len(value)}: {value!r}")


def _validate(
    study: StudySpec,
    slices: int,
    rows: int,
    columns: int,
    slice_thickness_mm: float,
    pixel_spacing_mm: float,
    series_number: int,
    series_description: str,
) -> None:
    if slices < 1:
        raise ValueError(f"slices must be >= 1, got {slices}")
    if rows < 8 or columns < 8:
        raise ValueError(f"rows and columns must be >= 8, got {rows}x{columns}")
    if not slice_thickness_mm > 0 or not pixel_spacing_mm > 0:
        raise ValueError("slice thickness and pixel spacing must be positive")
    if series_number < 0:
        raise ValueError(f"series_number must be >= 0, got {series_number}")
    patient = study.patient
    _parse_date(study.study_date, "study_date")
    _parse_time(study.study_time)
    if patient.birth_date:
        _parse_date(patient.birth_date, "birth_date")
    if patient.sex not in ("", "M", "F", "O"):
        raise ValueError(f"sex must be '', 'M', 'F' or 'O', got {patient.sex!r}")
    if not patient.patient_id:
        raise ValueError("patient_id must not be empty")
    for what, value, limit in (
        ("patient_id", patient.patient_id, 64),
        ("accession", study.accession, 16),
        ("station_name", study.station_name, 16),
        ("body_part", study.body_part, 16),
        ("description", study.description, 64),
        ("institution_name", study.institution_name, 64),
        ("series_description", series_description, 64),
    ):
        _check_length(what, value, limit)
    for what, value in (("name", patient.name), ("referring_physician", study.referring_physician)):
        for group in value.split("="):
            for component in group.split("^"):
                _check_length(f"{what} component", component, 64)


def generate_ct_series(
    study: StudySpec,
    slices: int = 300,
    rows: int = 512,
    columns: int = 512,
    slice_thickness_mm: float = 1.25,
    pixel_spacing_mm: float = 0.7,
    series_number: int = 1,
    series_description: str = "AXIAL 1.25mm",
    study_uid: str | None = None,
    seed: int = 0,
    uid_seed: str | None = None,
) -> Iterator[Dataset]:
    """Yield the slices of one axial CT series, superior first, each with its ``file_meta``.

    Pixel data depend only on the geometry arguments and ``seed``. UIDs are fresh on every call
    unless ``uid_seed`` is given (then they are derived from it, the study and the series
    number); pass ``study_uid`` to put several series in one study. Arguments are checked
    before the first slice is requested.
    """
    _validate(
        study,
        slices,
        rows,
        columns,
        slice_thickness_mm,
        pixel_spacing_mm,
        series_number,
        series_description,
    )
    return _iter_series(
        study,
        slices,
        rows,
        columns,
        slice_thickness_mm,
        pixel_spacing_mm,
        series_number,
        series_description,
        UID(study_uid) if study_uid else make_study_uid(study, uid_seed),
        seed,
        uid_seed,
    )


def _iter_series(
    study: StudySpec,
    slices: int,
    rows: int,
    columns: int,
    thickness: float,
    spacing: float,
    series_number: int,
    series_description: str,
    study_uid: UID,
    seed: int,
    uid_seed: str | None,
) -> Iterator[Dataset]:
    patient = study.patient
    texts = (
        patient.patient_id,
        patient.name,
        study.accession,
        study.description,
        study.referring_physician,
        study.institution_name,
        study.station_name,
        study.body_part,
        series_description,
    )
    charset = "ISO_IR 100" if all(text.isascii() for text in texts) else "ISO_IR 192"
    series_key = (study_uid, "series", str(series_number), series_description)
    series_uid = _uid(uid_seed, *series_key)
    frame_uid = _uid(uid_seed, *series_key, "frame-of-reference")
    study_date = _parse_date(study.study_date, "study_date")
    started = dt.datetime.combine(study_date, _parse_time(study.study_time))
    series_start = started + dt.timedelta(seconds=30 * series_number)
    age = ""
    if patient.birth_date:
        age = _age(_parse_date(patient.birth_date, "birth_date"), study_date)
    x0 = -(columns - 1) / 2.0 * spacing
    y0 = -(rows - 1) / 2.0 * spacing
    z_top = (slices - 1) / 2.0 * thickness
    phantom = ChestPhantom(slices, rows, columns, spacing, thickness, seed)

    for index in range(slices):
        sop_uid = _uid(uid_seed, series_uid, "sop", str(index + 1))
        content = series_start + dt.timedelta(seconds=20, milliseconds=10 * index)
        z = _ds(z_top - index * thickness)
        pixels = np.rint(phantom.slice_hu(index)).astype("<i2")

        ds = Dataset()
        ds.file_meta = file_meta(CTImageStorage, sop_uid)
        ds.SpecificCharacterSet = charset
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.InstanceCreationDate = content.strftime("%Y%m%d")
        ds.InstanceCreationTime = _dicom_time(content)
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = sop_uid
        ds.StudyDate = study.study_date
        ds.SeriesDate = series_start.strftime("%Y%m%d")
        ds.AcquisitionDate = series_start.strftime("%Y%m%d")
        ds.ContentDate = content.strftime("%Y%m%d")
        ds.StudyTime = study.study_time
        ds.SeriesTime = _dicom_time(series_start)
        ds.AcquisitionTime = _dicom_time(series_start)
        ds.ContentTime = _dicom_time(content)
        ds.AccessionNumber = study.accession
        ds.Modality = "CT"
        ds.Manufacturer = MANUFACTURER
        ds.InstitutionName = study.institution_name
        ds.ReferringPhysicianName = study.referring_physician
        ds.StationName = study.station_name
        ds.StudyDescription = study.description
        ds.SeriesDescription = series_description
        ds.ManufacturerModelName = "Synthetic Chest CT"
        ds.PatientName = patient.name
        ds.PatientID = patient.patient_id
        ds.PatientBirthDate = patient.birth_date
        ds.PatientSex = patient.sex
        if age:
            ds.PatientAge = age
        ds.BodyPartExamined = study.body_part
        ds.SliceThickness = _ds(thickness)
        ds.KVP = "120"
        ds.SpacingBetweenSlices = _ds(thickness)
        ds.DataCollectionDiameter = "500"
        ds.SoftwareVersions = "consilium-ct-phantom 1"
        ds.ProtocolName = study.description
        ds.ReconstructionDiameter = _ds(max(rows, columns) * spacing)
        ds.GantryDetectorTilt = "0"
        ds.TableHeight = "160"
        ds.RotationDirection = "CW"
        ds.ExposureTime = 500
        ds.XRayTubeCurrent = 200
        ds.Exposure = 100
        ds.ConvolutionKernel = "STANDARD"
        ds.PatientPosition = "HFS"
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.StudyID = study.accession or "1"
        ds.SeriesNumber = series_number
        ds.AcquisitionNumber = 1
        ds.InstanceNumber = index + 1
        ds.ImagePositionPatient = [_ds(x0), _ds(y0), z]
        ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
        ds.FrameOfReferenceUID = frame_uid
        ds.PositionReferenceIndicator = ""
        ds.SliceLocation = z
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows = rows
        ds.Columns = columns
        ds.PixelSpacing = [_ds(spacing), _ds(spacing)]
        ds.BitsAllocated = 16
        ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 1
        ds.WindowCenter = "40"
        ds.WindowWidth = "400"
        ds.RescaleIntercept = "0"
        ds.RescaleSlope = "1"
        ds.RescaleType = "HU"
        ds.BurnedInAnnotation = "NO"
        ds.PixelData = pixels.tobytes()
        ds["PixelData"].VR = "OW"
        yield ds


def write_ct_series(
    study: StudySpec,
    out_dir: Path,
    *,
    slices: int = 300,
    rows: int = 512,
    columns: int = 512,
    slice_thickness_mm: float = 1.25,
    pixel_spacing_mm: float = 0.7,
    series_number: int = 1,
    series_description: str = "AXIAL 1.25mm",
    study_uid: str | None = None,
    seed: int = 0,
    uid_seed: str | None = None,
) -> list[Path]:
    """Write the series as PS3.10 files ``CT_S{series:03d}_I{instance:05d}.dcm`` in ``out_dir``.

    Keyword arguments are those of :func:`generate_ct_series`; returns the paths in order.
    """
    series = generate_ct_series(
        study,
        slices=slices,
        rows=rows,
        columns=columns,
        slice_thickness_mm=slice_thickness_mm,
        pixel_spacing_mm=pixel_spacing_mm,
        series_number=series_number,
        series_description=series_description,
        study_uid=study_uid,
        seed=seed,
        uid_seed=uid_seed,
    )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    for index, ds in enumerate(series, start=1):
        path = out_dir / f"CT_S{series_number:03d}_I{index:05d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


# --------------------------------------------------------------------------- CLI


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: write one synthetic chest CT series to a directory."""
    parser = argparse.ArgumentParser(
        prog="python -m consilium.synthetic",
        description="Write a synthetic chest CT series (CT Image Storage, Part 10 files).",
    )
    parser.add_argument("out_dir", type=Path, help="directory to write the files into")
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--rows", type=int, default=512)
    parser.add_argument("--columns", type=int, default=512)
    parser.add_argument("--thickness", type=float, default=1.25, help="slice thickness, mm")
    parser.add_argument("--spacing", type=float, default=0.7, help="pixel spacing, mm")
    parser.add_argument("--patient-id", default="PHANTOM-001")
    parser.add_argument("--name", default="Phantom^Chest", help='DICOM PN, e.g. "Иванов^Иван"')
    parser.add_argument("--birth-date", default="", help="YYYYMMDD")
    parser.add_argument("--sex", default="", choices=["", "M", "F", "O"])
    parser.add_argument("--study-date", default=None, help="YYYYMMDD (default: today)")
    parser.add_argument("--study-time", default="101500", help="HHMMSS")
    parser.add_argument("--accession", default="")
    parser.add_argument("--description", default="CT CHEST")
    parser.add_argument("--referring-physician", default="")
    parser.add_argument("--institution", default="")
    parser.add_argument("--station", default="")
    parser.add_argument("--body-part", default="CHEST")
    parser.add_argument("--series-number", type=int, default=1)
    parser.add_argument("--series-description", default=None, help="default: AXIAL <thickness>mm")
    parser.add_argument("--study-uid", default=None, help="join an existing study")
    parser.add_argument("--seed", type=int, default=0, help="pixel noise and anatomy seed")
    parser.add_argument("--uid-seed", default=None, help="derive all UIDs deterministically")
    args = parser.parse_args(argv)

    study = StudySpec(
        patient=PatientSpec(args.patient_id, args.name, args.birth_date, args.sex),
        study_date=args.study_date or dt.date.today().strftime("%Y%m%d"),
        study_time=args.study_time,
        accession=args.accession,
        description=args.description,
        referring_physician=args.referring_physician,
        institution_name=args.institution,
        station_name=args.station,
        body_part=args.body_part,
    )
    study_uid: str = args.study_uid or make_study_uid(study, args.uid_seed)
    started = time.perf_counter()
    try:
        paths = write_ct_series(
            study,
            args.out_dir,
            slices=args.slices,
            rows=args.rows,
            columns=args.columns,
            slice_thickness_mm=args.thickness,
            pixel_spacing_mm=args.spacing,
            series_number=args.series_number,
            series_description=args.series_description or f"AXIAL {args.thickness:g}mm",
            study_uid=study_uid,
            seed=args.seed,
            uid_seed=args.uid_seed,
        )
    except ValueError as exc:
        parser.error(str(exc))
    elapsed = time.perf_counter() - started
    print(f"wrote {len(paths)} slices to {args.out_dir} in {elapsed:.1f} s")
    print(f"StudyInstanceUID {study_uid}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
