"""Made-up instances: who and what they are about, small images, and their encodings.

:class:`PatientSpec` and :class:`StudySpec` name the patient and the study of a synthetic series
(:func:`consilium.synthetic.ct.generate_ct_series`); :func:`image` makes a small complete image
instance, every attribute of which a caller may set or (with ``None``) leave out, which is how
tests make the odd and broken instances they need. :func:`encoded`, :func:`dataset_bytes` and
:func:`write` turn any of them into what a modality sends: a PS3.10 file, or the dataset alone
as it travels over DIMSE.
"""

from __future__ import annotations

from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from consilium.archive.dicomfile import file_meta, split_part10


@dataclass(frozen=True)
class PatientSpec:
    """Patient identity; ``name`` is a DICOM PN string such as ``Иванов^Иван``."""

    patient_id: str
    name: str
    birth_date: str = ""
    sex: str = ""


@dataclass(frozen=True)
class StudySpec:
    """Study-level attributes shared by every series generated for it."""

    patient: PatientSpec
    study_date: str
    study_time: str = "101500"
    accession: str = ""
    description: str = "CT CHEST"
    referring_physician: str = ""
    institution_name: str = ""
    station_name: str = ""
    body_part: str = "CHEST"


def image(sop_class: str = CTImageStorage, *, modality: str = "CT", rows: int = 4,
          columns: int = 4, pixels: bytes | None = None, signed: bool = False,
          **attributes: Any) -> Dataset:
    """A small monochrome 16-bit image of ``sop_class`` in a study and series of its own (new
    UIDs), zero pixels unless ``pixels`` are given, with file meta for explicit VR little endian.
    ``attributes`` are keywords set after that (a patient, a study, other UIDs...); a keyword
    given ``None`` is left out."""
    ds = Dataset()
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = modality
    ds.Rows, ds.Columns = rows, columns
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1 if signed else 0
    ds.PixelData = bytes(rows * columns * 2) if pixels is None else pixels
    for keyword, value in attributes.items():
        if value is None:
            if keyword in ds:
                delattr(ds, keyword)
        else:
            setattr(ds, keyword, value)
    ds.preamble = bytes(128)  # a PS3.10 file as it is, even where a writer does not enforce one
    _meta_of(ds)
    return ds


def _meta_of(ds: Dataset, transfer_syntax: str = ExplicitVRLittleEndian) -> None:
    """File meta from the SOP Class and Instance UIDs (made up where a test left them out on
    purpose), so the dataset can be written or sent as it is."""
    ds.file_meta = file_meta(ds.get("SOPClassUID", CTImageStorage),
                             ds.get("SOPInstanceUID", generate_uid()), transfer_syntax)


def encoded(ds: Dataset, transfer_syntax: str = ExplicitVRLittleEndian) -> bytes:
    """``ds`` as a PS3.10 file in ``transfer_syntax`` (its file meta set from its SOP Class and
    Instance UIDs; made up where a test left them out on purpose)."""
    _meta_of(ds, transfer_syntax)
    out = BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def dataset_bytes(ds: Dataset, transfer_syntax: str = ExplicitVRLittleEndian) -> bytes:
    """The encoded dataset without file meta: what a C-STORE request carries."""
    data = encoded(ds, transfer_syntax)
    return data[split_part10(data).dataset_offset:]


def write(ds: Dataset, path: Path, transfer_syntax: str = ExplicitVRLittleEndian) -> Path:
    """``ds`` as the PS3.10 file ``path`` (its folder made if need be)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(encoded(ds, transfer_syntax))
    return path
