"""Reading what the archive needs out of encoded DICOM, without decoding pixel data.

Three jobs, all on bytes as received:

* :func:`check_structure` walks every element of an encoded dataset and proves that each value
  fits in the buffer. pydicom is lenient on purpose (a truncated file reads "fine" with a warning
  or simply misses its pixel data); an archive must refuse such a file instead of storing it.
* :func:`build_file_meta` wraps a dataset received over the network into a PS3.10 file
  without touching the dataset bytes (stored as received, no re-encoding);
  :func:`encode_part10` writes a dataset made in memory (a conclusion, a synthetic image) with
  the same File Meta Information.
* :func:`read_header` decodes the attributes the index needs, with names decoded through their
  Specific Character Set (ISO_IR 144, ISO_IR 192, ...).

The walk also refuses what a reader further on would choke on: a VR that no dictionary knows in
an explicit VR dataset, and sequences nested deeper than :data:`MAX_NESTING` (the walk and
pydicom's reader both recurse per level; a 1,000-deep object is an attack, not an image). It
notes where the top-level pixel data is (:class:`PixelLayout`), so that ingest can check it
against the transfer syntax and the declared size without decoding it.
"""

from __future__ import annotations

import struct
import warnings
import zlib
from dataclasses import dataclass, replace
from dataclasses import field as dataclass_field
from io import BytesIO
from typing import Any

from pydicom import dcmread
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.tag import BaseTag
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

IMPLEMENTATION_CLASS_UID = PYDICOM_IMPLEMENTATION_UID
IMPLEMENTATION_VERSION_NAME = "CONSILIUM_01"

_LONG_VRS = frozenset(
    {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
)
_SHORT_VRS = frozenset(
    {b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FL", b"FD", b"IS", b"LO", b"LT", b"PN",
     b"SH", b"SL", b"SS", b"ST", b"TM", b"UI", b"UL", b"US"}
)
# Sequence nesting allowed: real objects stay under ~10 levels (SR trees under ~20); every level
# costs a few Python frames here and in pydicom, so 1,000 levels overflow the interpreter's stack.
MAX_NESTING = 64
_UNDEFINED = 0xFFFFFFFF
_ITEM = 0xFFFEE000
_ITEM_DELIMITER = 0xFFFEE00D
_SEQUENCE_DELIMITER = 0xFFFEE0DD
_PIXEL_DATA = 0x7FE00010
_PIXEL_TAGS = frozenset({0x7FE00008, 0x7FE00009, _PIXEL_DATA})


# the top-level attributes the index reads (keyword order as in InstanceHeader)
_HEADER_KEYWORDS = (
    "SpecificCharacterSet", "SOPClassUID", "SOPInstanceUID", "StudyInstanceUID",
    "SeriesInstanceUID", "PatientID", "IssuerOfPatientID", "PatientName", "PatientBirthDate",
    "PatientSex", "StudyDate", "StudyTime", "AccessionNumber", "StudyID", "StudyDescription",
    "ReferringPhysicianName", "Modality", "SeriesNumber", "SeriesDescription", "BodyPartExamined",
    "SeriesDate", "SeriesTime", "InstanceNumber", "NumberOfFrames", "Rows", "Columns",
    "SamplesPerPixel", "BitsAllocated",
)


class UnreadableDicom(ValueError):
    """The bytes are not a complete, well-formed DICOM dataset; the message says where."""


@dataclass(frozen=True)
class Encoding:
    implicit_vr: bool
    little_endian: bool
    deflated: bool

    @classmethod
    def of(cls, transfer_syntax: str) -> Encoding:
        uid = UID(transfer_syntax)
        if uid == ImplicitVRLittleEndian:
            return cls(True, True, False)
        if uid == ExplicitVRBigEndian:
            return cls(False, False, False)
        if uid == DeflatedExplicitVRLittleEndian:
            return cls(False, True, True)
        # every other standard transfer syntax (including all compressed ones) encodes the
        # dataset in explicit VR little endian
        return cls(False, True, False)


def inflate(data: bytes | memoryview) -> bytes:
    """The dataset of a Deflated Explicit VR Little Endian stream (raw deflate, RFC 1951)."""
    try:
        decompressor = zlib.decompressobj(-zlib.MAX_WBITS)
        out = decompressor.decompress(bytes(data)) + decompressor.flush()
    except zlib.error as exc:
        raise UnreadableDicom(f"deflated dataset cannot be inflated: {exc}") from exc
    if not decompressor.eof:
        raise UnreadableDicom("deflated dataset is truncated")
    return out


@dataclass(frozen=True)
class PixelLayout:
    """Where the top-level pixel data element of a dataset is (offsets into the dataset)."""

    tag: int  # (7FE0,0010) Pixel Data, (7FE0,0008) Float, (7FE0,0009) Double Float
    offset: int  # of the value (the first item tag when encapsulated)
    length: int  # of the value; for encapsulated data up to and including the delimiter
    encapsulated: bool
    fragments: tuple[tuple[int, int], ...] = ()  # (offset, length) of each item, offset table first


def _tags() -> frozenset[int]:
    from pydicom.datadict import tag_for_keyword

    return frozenset(int(tag_for_keyword(k) or 0) for k in _HEADER_KEYWORDS)


_HEADER_TAGS = _tags()


def _sequence_tags() -> frozenset[int]:
    from pydicom._dicom_dict import DicomDictionary

    return frozenset(int(tag) for tag, entry in DicomDictionary.items() if entry[0] == "SQ")


_SQ_TAGS = _sequence_tags()  # what implicit VR data does not say: which elements are sequences


def _is_sequence(tag: int) -> bool:
    return tag in _SQ_TAGS


class _Walker:
    """Checks that a dataset's elements, sequences and items are complete."""

    def __init__(
        self, buf: memoryview, encoding: Encoding, wanted: frozenset[int] = frozenset()
    ) -> None:
        self.buf = buf
        self.wanted = wanted
        self.found: dict[int, tuple[bytes | None, int, int]] = {}  # tag -> (VR, offset, length)
        self.pixel: PixelLayout | None = None
        self.depth = 0
        self.end = len(buf)
        self.little = encoding.little_endian
        self.implicit = encoding.implicit_vr
        self.u16 = struct.Struct("<H" if self.little else ">H").unpack_from
        self.u32 = struct.Struct("<I" if self.little else ">I").unpack_from
        self.tag_u16 = self.u16

    def _need(self, pos: int, size: int, what: str, end: int | None = None) -> None:
        if pos + size > (self.end if end is None else end):
            raise UnreadableDicom(f"dataset truncated in {what} at byte {pos}")

    def _tag(self, pos: int, u16: Any) -> int:
        group = u16(self.buf, pos)[0]
        elem = u16(self.buf, pos + 2)[0]
        return int((group << 16) | elem)

    def dataset(self, pos: int, implicit: bool, stop_at_item_end: bool,
                end: int | None = None) -> int:
        """Walk elements from ``pos`` to ``end`` (an item of defined length) or to the item
        delimiter (``stop_at_item_end``) or the end of the buffer; return the position after
        the dataset."""
        le16 = struct.Struct("<H").unpack_from
        le32 = struct.Struct("<I").unpack_from
        # implicit VR inside UN with undefined length is always little endian
        u16 = le16 if implicit and not self.implicit else self.u16
        u32 = le32 if implicit and not self.implicit else self.u32
        top = not stop_at_item_end and end is None
        limit = self.end if end is None else end
        while pos < limit:
            self._need(pos, 8, "an element header", limit)
            tag = self._tag(pos, u16)
            if tag == _ITEM_DELIMITER:
                if not stop_at_item_end:
                    raise UnreadableDicom(f"unexpected item delimiter at byte {pos}")
                return pos + 8
            if tag in (_ITEM, _SEQUENCE_DELIMITER):
                raise UnreadableDicom(f"unexpected item tag ({tag:08X}) at byte {pos}")
            if implicit:
                vr = b""
                length = u32(self.buf, pos + 4)[0]
                pos += 8
            else:
                vr = bytes(self.buf[pos + 4 : pos + 6])
                if vr in _LONG_VRS:
                    self._need(pos, 12, "an element header", limit)
                    length = u32(self.buf, pos + 8)[0]
                    pos += 12
                elif vr in _SHORT_VRS:
                    length = u16(self.buf, pos + 6)[0]
                    pos += 8
                else:
                    raise UnreadableDicom(
                        f"unknown VR 0x{vr.hex().upper()} of ({tag >> 16:04X},"
                        f"{tag & 0xFFFF:04X}) at byte {pos}")
            top_pixels = False
            if top:
                if tag in self.wanted and length != _UNDEFINED:
                    self.found[tag] = (vr or None, pos, length)
                top_pixels = tag in _PIXEL_TAGS
            if length == _UNDEFINED:
                if tag == _PIXEL_DATA:
                    start = pos
                    fragments: list[tuple[int, int]] = []
                    pos = self.fragments(pos, u16, u32, fragments if top_pixels else None)
                    if top_pixels:
                        self.pixel = PixelLayout(tag, start, pos - start, True, tuple(fragments))
                else:
                    # SQ, or UN holding a sequence (its content is implicit VR little endian)
                    pos = self.sequence(pos, implicit or vr == b"UN", u16, u32, None)
            else:
                if pos + length > limit:  # (inline: this runs for every element)
                    raise UnreadableDicom(f"dataset truncated in the value of ({tag >> 16:04X},"
                                          f"{tag & 0xFFFF:04X}) at byte {pos}")
                if length and (vr == b"SQ" or (implicit and _is_sequence(tag))):
                    self.sequence(pos, implicit, u16, u32, pos + length)
                if top_pixels:
                    self.pixel = PixelLayout(tag, pos, length, False)
                pos += length
        if stop_at_item_end:
            raise UnreadableDicom("dataset truncated: item delimiter missing")
        if pos != limit:
            raise UnreadableDicom(f"an element overruns its item at byte {pos}")
        return pos

    def sequence(self, pos: int, implicit: bool, u16: Any, u32: Any, end: int | None) -> int:
        """The items of a sequence of undefined length (``end`` None: up to its delimiter) or
        of defined length; each item's elements are walked too."""
        self.depth += 1
        if self.depth > MAX_NESTING:
            raise UnreadableDicom(f"sequences nested deeper than {MAX_NESTING} levels at byte "
                                  f"{pos}")
        try:
            limit = self.end if end is None else end
            while end is None or pos < end:
                self._need(pos, 8, "a sequence item header", limit)
                tag = self._tag(pos, u16)
                length = u32(self.buf, pos + 4)[0]
                pos += 8
                if tag == _SEQUENCE_DELIMITER and end is None:
                    return pos
                if tag != _ITEM:
                    raise UnreadableDicom(f"expected a sequence item at byte {pos - 8}")
                if length == _UNDEFINED:
                    pos = self.dataset(pos, implicit, stop_at_item_end=True)
                else:
                    if pos + length > limit:
                        raise UnreadableDicom(f"sequence item overruns its sequence at byte "
                                              f"{pos}")
                    pos = self.dataset(pos, implicit, stop_at_item_end=False, end=pos + length)
            if pos != end:
                raise UnreadableDicom(f"sequence items overrun their sequence at byte {pos}")
            return pos
        finally:
            self.depth -= 1

    def fragments(self, pos: int, u16: Any, u32: Any,
                  found: list[tuple[int, int]] | None = None) -> int:
        """Encapsulated pixel data: items of defined length up to the sequence delimiter;
        their (offset, length) go to ``found`` when given."""
        while True:
            self._need(pos, 8, "an encapsulated pixel data fragment")
            tag = self._tag(pos, u16)
            length = u32(self.buf, pos + 4)[0]
            pos += 8
            if tag == _SEQUENCE_DELIMITER:
                return pos
            if tag != _ITEM or length == _UNDEFINED:
                raise UnreadableDicom(f"bad encapsulated pixel data fragment at byte {pos - 8}")
            self._need(pos, length, "an encapsulated pixel data fragment")
            if found is not None:
                found.append((pos, length))
            pos += length


def check_structure(dataset: bytes | memoryview, transfer_syntax: str) -> InstanceHeader:
    """Prove that every element of ``dataset`` is complete and decode the index attributes.

    Raises :class:`UnreadableDicom`. One pass: the walk that checks the structure also notes
    where the attributes of the index are, and only those are decoded (pixel data never is).
    """
    encoding = Encoding.of(transfer_syntax)
    view = memoryview(inflate(dataset) if encoding.deflated else dataset)
    if len(view) == 0:
        raise UnreadableDicom("empty dataset")
    walker = _Walker(view, encoding, _HEADER_TAGS)
    walker.dataset(0, encoding.implicit_vr, stop_at_item_end=False)
    fast = _plain_header(view, walker.found, encoding, walker.pixel)
    if fast is not None:
        return fast
    raw = Dataset()
    for tag, (vr, offset, length) in sorted(walker.found.items()):
        value = bytes(view[offset : offset + length])
        raw[tag] = RawDataElement(
            BaseTag(tag), vr.decode("ascii", "replace") if vr else None, length, value,
            offset, encoding.implicit_vr, encoding.little_endian,
        )
    raw.set_original_encoding(encoding.implicit_vr, encoding.little_endian, "")
    header = _header_of(raw)
    return replace(header, pixel=walker.pixel) if walker.pixel is not None else header


def _meta_element(group_elem: int, vr: bytes, value: bytes, pad: bytes) -> bytes:
    if len(value) % 2:
        value += pad
    if vr == b"OB":
        return struct.pack("<HH2s2xI", 0x0002, group_elem, vr, len(value)) + value
    return struct.pack("<HH2sH", 0x0002, group_elem, vr, len(value)) + value


def build_file_meta(
    sop_class_uid: str, sop_instance_uid: str, transfer_syntax: str, source_ae: str = ""
) -> bytes:
    """The PS3.10 preamble, prefix and File Meta Information for one instance (PS3.10 7.1),
    encoded directly: this runs for every received instance."""
    for uid in (sop_class_uid, sop_instance_uid, transfer_syntax):
        if not uid or len(uid) > 64 or not uid.isascii():
            raise ValueError(f"unusable UID {uid!r}")
    body = b"".join(
        (
            _meta_element(0x0001, b"OB", b"\x00\x01", b"\x00"),
            _meta_element(0x0002, b"UI", sop_class_uid.encode(), b"\x00"),
            _meta_element(0x0003, b"UI", sop_instance_uid.encode(), b"\x00"),
            _meta_element(0x0010, b"UI", transfer_syntax.encode(), b"\x00"),
            _meta_element(0x0012, b"UI", IMPLEMENTATION_CLASS_UID.encode(), b"\x00"),
            _meta_element(0x0013, b"SH", IMPLEMENTATION_VERSION_NAME.encode(), b" "),
            _meta_element(0x0016, b"AE", source_ae.encode("ascii", "replace"), b" ")
            if source_ae
            else b"",
        )
    )
    group_length = struct.pack("<HH2sHI", 0x0002, 0x0000, b"UL", 4, len(body))
    return b"\x00" * 128 + b"DICM" + group_length + body


def file_meta(sop_class_uid: str, sop_instance_uid: str,
              transfer_syntax: str = ExplicitVRLittleEndian) -> FileMetaDataset:
    """The File Meta Information of an instance made here (PS3.10 7.1)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(sop_class_uid)
    meta.MediaStorageSOPInstanceUID = UID(sop_instance_uid)
    meta.TransferSyntaxUID = UID(transfer_syntax)
    meta.ImplementationClassUID = UID(IMPLEMENTATION_CLASS_UID)
    meta.ImplementationVersionName = IMPLEMENTATION_VERSION_NAME
    return meta


def encode_part10(ds: Dataset, transfer_syntax: str = ExplicitVRLittleEndian) -> bytes:
    """``ds`` as a PS3.10 file in ``transfer_syntax``, its file meta from its SOP Class and
    Instance UIDs (set on ``ds`` too)."""
    ds.file_meta = file_meta(ds.SOPClassUID, ds.SOPInstanceUID, transfer_syntax)
    out = BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


@dataclass(frozen=True)
class Part10:
    """A PS3.10 file split into its meta information and the dataset bytes."""

    meta: FileMetaDataset
    dataset_offset: int

    @property
    def transfer_syntax(self) -> str:
        return str(self.meta.get("TransferSyntaxUID", ""))


def split_part10(data: bytes) -> Part10:
    """Read the File Meta Information of a PS3.10 file; raise UnreadableDicom if absent."""
    if len(data) < 132 or data[128:132] != b"DICM":
        raise UnreadableDicom("not a DICOM PS3.10 file (no 'DICM' prefix after the preamble)")
    fp = BytesIO(data)
    fp.seek(132)
    try:
        from pydicom.filereader import _read_file_meta_info

        meta = _read_file_meta_info(fp)
    except Exception as exc:
        raise UnreadableDicom(f"unreadable file meta information: {exc}") from exc
    if "TransferSyntaxUID" not in meta:
        raise UnreadableDicom("file meta information has no Transfer Syntax UID (0002,0010)")
    return Part10(meta=meta, dataset_offset=fp.tell())


@dataclass(frozen=True)
class InstanceHeader:
    """What the index keeps of one instance."""

    sop_class_uid: str
    sop_instance_uid: str
    study_uid: str
    series_uid: str
    patient_id: str
    issuer: str
    patient_name: str
    birth_date: str
    sex: str
    study_date: str
    study_time: str
    accession_number: str
    study_id: str
    study_description: str
    referring_physician: str
    modality: str
    series_number: int | None
    series_description: str
    body_part: str
    series_date: str
    series_time: str
    instance_number: int | None
    number_of_frames: int
    rows: int | None
    columns: int | None
    samples_per_pixel: int | None = None
    bits_allocated: int | None = None
    # where the pixel data is in the bytes checked (check_structure only; not an attribute)
    pixel: PixelLayout | None = dataclass_field(default=None, compare=False)


# InstanceHeader's fields: (field, keyword, text length limit), then the integer ones
_TEXT_FIELDS = (
    ("sop_class_uid", "SOPClassUID", 64), ("sop_instance_uid", "SOPInstanceUID", 128),
    ("study_uid", "StudyInstanceUID", 128), ("series_uid", "SeriesInstanceUID", 128),
    ("patient_id", "PatientID", 64), ("issuer", "IssuerOfPatientID", 64),
    ("patient_name", "PatientName", 324), ("birth_date", "PatientBirthDate", 8),
    ("sex", "PatientSex", 16), ("study_date", "StudyDate", 8), ("study_time", "StudyTime", 16),
    ("accession_number", "AccessionNumber", 64), ("study_id", "StudyID", 16),
    ("study_description", "StudyDescription", 256),
    ("referring_physician", "ReferringPhysicianName", 324), ("modality", "Modality", 16),
    ("series_description", "SeriesDescription", 256), ("body_part", "BodyPartExamined", 64),
    ("series_date", "SeriesDate", 8), ("series_time", "SeriesTime", 16),
)
_INT_FIELDS = (("series_number", "SeriesNumber"), ("instance_number", "InstanceNumber"),
               ("number_of_frames", "NumberOfFrames"), ("rows", "Rows"), ("columns", "Columns"),
               ("samples_per_pixel", "SamplesPerPixel"), ("bits_allocated", "BitsAllocated"))


def _field_tags() -> tuple[tuple[tuple[str, int, str, int], ...], tuple[tuple[str, int, str], ...]]:
    from pydicom.datadict import dictionary_VR, tag_for_keyword

    def tag(keyword: str) -> int:
        return int(tag_for_keyword(keyword) or 0)

    return (tuple((f, tag(k), dictionary_VR(tag(k)), n) for f, k, n in _TEXT_FIELDS),
            tuple((f, tag(k), dictionary_VR(tag(k))) for f, k in _INT_FIELDS))


_TEXT_TAGS, _INT_TAGS = _field_tags()
_NOT_PLAIN = frozenset(range(0x80, 0x100)) | {0x1B, 0x5C}  # non-ASCII, ISO 2022 escape, "\"


def _plain_header(view: memoryview, found: dict[int, tuple[bytes | None, int, int]],
                  encoding: Encoding, pixel: PixelLayout | None = None) -> InstanceHeader | None:
    """The header straight from the bytes when every value is plain: single-valued ASCII
    text (so no character set can change it), integer strings and 2-byte US values. None
    otherwise, and pydicom decodes it (:func:`_header_of`); both agree (tested on the whole
    pydicom corpus). Saves ~0.3 ms per instance, ~9% of a C-STORE's CPU."""
    values: dict[str, Any] = {}
    for field, tag, vr, limit in _TEXT_TAGS:
        where = found.get(tag)
        if where is None:
            values[field] = ""
            continue
        stated, offset, length = where
        if stated is not None and stated.decode("ascii", "replace") != vr:
            return None
        data = bytes(view[offset: offset + length])
        if vr == "UI":
            data = data.rstrip(b"\x00")
        if not _NOT_PLAIN.isdisjoint(data) or b"\x00" in data:
            return None
        values[field] = data.decode("ascii").strip()[:limit]
    for field, tag, vr in _INT_TAGS:
        where = found.get(tag)
        if where is None:
            values[field] = None
            continue
        stated, offset, length = where
        if stated is not None and stated.decode("ascii", "replace") != vr:
            return None
        data = bytes(view[offset: offset + length])
        if vr == "US":
            if length != 2:
                return None
            values[field] = struct.unpack("<H" if encoding.little_endian else ">H", data)[0]
            continue
        text = data.strip(b" \x00")
        if not text:
            values[field] = None
        elif text.isdigit() or (text[:1] in b"+-" and text[1:].isdigit()):
            values[field] = int(text)
        else:
            return None
    values["number_of_frames"] = values["number_of_frames"] or 1
    return InstanceHeader(**values, pixel=pixel)


def _text(ds: Dataset, keyword: str, limit: int = 256) -> str:
    value = ds.get(keyword)
    if value is None:
        return ""
    if isinstance(value, list | tuple):  # multi-valued: keep DICOM's backslash form
        return "\\".join(str(v) for v in value)[:limit]
    return str(value).strip()[:limit]


def _int(ds: Dataset, keyword: str) -> int | None:
    value = ds.get(keyword)
    if value is None or value == "":
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def read_header(part10: bytes) -> InstanceHeader:
    """Decode the index attributes of a PS3.10 file (pixel data is not read)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = dcmread(BytesIO(part10), stop_before_pixels=True)
    except (InvalidDicomError, EOFError, ValueError, KeyError, TypeError, LookupError) as exc:
        raise UnreadableDicom(f"dataset cannot be decoded: {exc}") from exc
    return _header_of(ds)


def _header_of(ds: Dataset) -> InstanceHeader:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            header = InstanceHeader(
                sop_class_uid=_text(ds, "SOPClassUID", 64),
                sop_instance_uid=_text(ds, "SOPInstanceUID", 128),
                study_uid=_text(ds, "StudyInstanceUID", 128),
                series_uid=_text(ds, "SeriesInstanceUID", 128),
                patient_id=_text(ds, "PatientID", 64),
                issuer=_text(ds, "IssuerOfPatientID", 64),
                patient_name=_text(ds, "PatientName", 324),
                birth_date=_text(ds, "PatientBirthDate", 8),
                sex=_text(ds, "PatientSex", 16),
                study_date=_text(ds, "StudyDate", 8),
                study_time=_text(ds, "StudyTime", 16),
                accession_number=_text(ds, "AccessionNumber", 64),
                study_id=_text(ds, "StudyID", 16),
                study_description=_text(ds, "StudyDescription"),
                referring_physician=_text(ds, "ReferringPhysicianName", 324),
                modality=_text(ds, "Modality", 16),
                series_number=_int(ds, "SeriesNumber"),
                series_description=_text(ds, "SeriesDescription"),
                body_part=_text(ds, "BodyPartExamined", 64),
                series_date=_text(ds, "SeriesDate", 8),
                series_time=_text(ds, "SeriesTime", 16),
                instance_number=_int(ds, "InstanceNumber"),
                number_of_frames=_int(ds, "NumberOfFrames") or 1,
                rows=_int(ds, "Rows"),
                columns=_int(ds, "Columns"),
                samples_per_pixel=_int(ds, "SamplesPerPixel"),
                bits_allocated=_int(ds, "BitsAllocated"),
            )
    except (InvalidDicomError, EOFError, ValueError, KeyError, TypeError, LookupError) as exc:
        raise UnreadableDicom(f"dataset cannot be decoded: {exc}") from exc
    return header
