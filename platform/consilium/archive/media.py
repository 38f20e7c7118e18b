"""Patient media: a study (or several) as a PS3.10 file-set with its DICOMDIR, packed as a ZIP
or as an ISO 9660 image for a CD or DVD, which any DICOM viewer opens.

The file-set follows the General Purpose CD-R/DVD interchange (PS3.11 STD-GEN-CD): every file
in Explicit VR Little Endian (an instance stored in another uncompressed syntax is re-encoded;
a compressed one keeps its syntax, which the DVD profiles of PS3.11 allow), file IDs of at most
eight upper-case characters per component (``PT000000/ST000000/SE000000/IM000000``, pydicom's
file-set layout), the DICOMDIR at the root. The ISO image is interchange level 1 (the names
are already 8.3-safe) with the file-set in its root, so a CD burnt from it starts like a
scanner's disc.

A transform (de-identification, :mod:`consilium.archive.deidentify`) may replace each dataset
before it is written. Everything is built in a private temporary folder that is removed
afterwards; the caller streams the finished file and deletes it.
"""

from __future__ import annotations

import io
import shutil
import warnings
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

import pycdlib
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.fileset import DIRECTORY_RECORDERS, FileSet, RecordNode
from pydicom.uid import (
    UID,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    generate_uid,
)

from consilium.errors import PayloadTooLarge, Unprocessable

UNCOMPRESSED = {ImplicitVRLittleEndian, "1.2.840.10008.1.2.2", ExplicitVRLittleEndian}
FILESET_ID = "CONSILIUM"


class MediaFormat(StrEnum):
    ZIP = "zip"
    ISO = "iso"


Transform = Callable[[Dataset], Dataset]


@dataclass
class MediaSummary:
    """What went onto the medium."""

    instances: int = 0
    studies: set[str] = field(default_factory=set)
    patients: set[str] = field(default_factory=set)
    flagged: list[str] = field(default_factory=list)  # e.g. burned-in annotation, by SOP UID
    bytes: int = 0


def _for_media(ds: Dataset) -> Dataset:
    """The dataset in Explicit VR Little Endian when it was in another uncompressed syntax."""
    ts = UID(str(ds.file_meta.get("TransferSyntaxUID", ExplicitVRLittleEndian)))
    if ts in UNCOMPRESSED and ts != ExplicitVRLittleEndian:
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return ds


# Type 1 keys of the DICOMDIR's records (PS3.3 F.5) that an instance may lack or have empty
# (a de-identified copy has no dates): the record gets a stand-in, the file keeps its value,
# as dcmmkdir's --invent does.
_RECORD_STAND_INS = {"PatientID": "UNKNOWN", "StudyDate": "19000101", "StudyTime": "000000",
                     "StudyID": "1", "Modality": "OT", "SeriesNumber": "1"}


def _leaf(ds: Dataset, index: int) -> RecordNode:
    """The DICOMDIR records of ``ds``, from PATIENT down to its own (IMAGE, SR DOCUMENT, ...),
    built by pydicom's record definitions from the instance's header with stand-ins where a
    type 1 key is empty."""
    header = Dataset()
    header.file_meta = ds.file_meta
    for element in ds:
        if element.tag.group != 0x7FE0:  # the record needs no pixels
            header.add(element)
    for keyword, value in _RECORD_STAND_INS.items():
        if not str(header.get(keyword, "") or "").strip():
            setattr(header, keyword, value)
    if header.get("InstanceNumber") in (None, ""):
        header.InstanceNumber = index + 1
    probe = FileSet().add(header).node  # which records the SOP class needs
    chain = [*reversed([n for n in probe.ancestors if not n.is_root]), probe]
    node: RecordNode | None = None
    for level in chain:
        record = DIRECTORY_RECORDERS[level.record_type](header)
        record.DirectoryRecordType = level.record_type
        if "SpecificCharacterSet" in ds:
            record.SpecificCharacterSet = ds.SpecificCharacterSet
        if level is probe:  # the instance's own record names its file
            record.ReferencedSOPClassUIDInFile = ds.SOPClassUID
            record.ReferencedSOPInstanceUIDInFile = ds.SOPInstanceUID
            record.ReferencedTransferSyntaxUIDInFile = ds.file_meta.TransferSyntaxUID
        child = RecordNode(record)
        if node is not None:
            child.parent = node
        node = child
    assert node is not None
    return node


def write_fileset(sources: Iterable[Path], folder: Path, *, transform: Transform | None = None,
                  max_bytes: int | None = None,
                  flag: Callable[[Dataset], str | None] | None = None) -> MediaSummary:
    """The instances of ``sources`` (stored PS3.10 files) as a file-set with its DICOMDIR in
    ``folder`` (which must not exist). :class:`PayloadTooLarge` past ``max_bytes`` of
    instances, :class:`Unprocessable` for a file that cannot go onto media."""
    summary = MediaSummary()
    fileset = FileSet()
    fileset.ID = FILESET_ID
    fileset.UID = generate_uid(prefix=None)
    staged = folder.with_name(folder.name + ".staging")
    staged.mkdir(parents=True)
    try:
        for index, path in enumerate(sources):
            summary.bytes += path.stat().st_size
            if max_bytes is not None and summary.bytes > max_bytes:
                raise PayloadTooLarge(f"the export is over the media limit of "
                                      f"{max_bytes // 2**20} MiB; choose fewer studies")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ds: Dataset = dcmread(path)
            if flag is not None:
                reason = flag(ds)
                if reason:
                    summary.flagged.append(f"{ds.get('SOPInstanceUID', '?')}: {reason}")
            if transform is not None:
                ds = transform(ds)
            ds = _for_media(ds)
            summary.studies.add(str(ds.get("StudyInstanceUID", "")))
            summary.patients.add(str(ds.get("PatientID", "")))
            target = staged / f"{index:08d}.dcm"
            try:
                ds.save_as(target, enforce_file_format=True)
                fileset.add_custom(target, _leaf(ds, index))
            except (ValueError, KeyError, AttributeError) as exc:
                raise Unprocessable(f"{ds.get('SOPInstanceUID', path.name)} cannot go onto "
                                    f"media: {exc}") from exc
            summary.instances += 1
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fileset.write(folder)
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    return summary


def _members(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


def pack_zip(folder: Path, target: Path) -> None:
    """The file-set as a ZIP (stored, not deflated: pixel data barely shrinks, and a viewer on
    the patient's computer opens it at once)."""
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for path in _members(folder):
            zf.write(path, path.relative_to(folder).as_posix())


def pack_iso(folder: Path, target: Path, volume_id: str = FILESET_ID) -> None:
    """The file-set as an ISO 9660 image (interchange level 1: ``NAME.;1`` without an
    extension, upper case, as PS3.12 asks of a CD-R), the file-set in its root."""
    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=1, vol_ident=volume_id[:32].upper(), sys_ident="CONSILIUM",
            app_ident_str="CONSILIUM DICOM MEDIA")
    try:
        for directory in sorted(p for p in folder.rglob("*") if p.is_dir()):
            iso.add_directory("/" + directory.relative_to(folder).as_posix().upper())
        for path in _members(folder):
            name = "/" + path.relative_to(folder).as_posix().upper()
            iso.add_file(str(path), (name if "." in path.name else name + ".") + ";1")
        iso.write(str(target))
    finally:
        iso.close()


def iso_listing(image: Path) -> dict[str, bytes]:
    """Every file of an ISO image by its path without the ``;1`` version (what a reader
    sees), with its content: used to check an image against its file-set."""
    iso = pycdlib.PyCdlib()
    iso.open(str(image))
    found: dict[str, bytes] = {}
    try:
        for parent, _dirs, files in iso.walk(iso_path="/"):
            for name in files:
                iso_path = f"{parent.rstrip('/')}/{name}"
                out = io.BytesIO()
                iso.get_file_from_iso_fp(out, iso_path=iso_path)
                clean = iso_path.split(";")[0].rstrip(".")
                found[clean.lstrip("/")] = out.getvalue()
    finally:
        iso.close()
    return found


def build_media(sources: Iterable[Path], work: Path, fmt: MediaFormat, *,
                transform: Transform | None = None, max_bytes: int | None = None,
                flag: Callable[[Dataset], str | None] | None = None,
                volume_id: str = FILESET_ID) -> tuple[Path, MediaSummary]:
    """The medium as one file in ``work`` (a private folder the caller removes), and what is
    on it."""
    folder = work / "fileset"
    summary = write_fileset(sources, folder, transform=transform, max_bytes=max_bytes,
                            flag=flag)
    target = work / f"media.{fmt.value}"
    if fmt is MediaFormat.ZIP:
        pack_zip(folder, target)
    else:
        pack_iso(folder, target, volume_id)
    shutil.rmtree(folder, ignore_errors=True)
    return target, summary
