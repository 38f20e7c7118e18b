"""The instance metadata that WADO-RS serves, generated from stored files, and its cache.

Metadata is generated from the stored file's header (the pixel data is never read) in the DICOM
JSON Model of :mod:`consilium.archive.dicomjson`, and cached per content hash, both in memory
and as a file under the cache directory: content-addressed, so a cached entry is never stale.
Bulk data URIs are cached as markers (:func:`~consilium.archive.dicomjson.marker_bulk`) that
:func:`~consilium.archive.dicomjson.with_base` makes absolute when the metadata is served.

Files in explicit VR little endian (nearly everything a modality sends) are walked here
directly, several times faster than pydicom reads them; anything unusual falls back to pydicom.
"""

from __future__ import annotations

import json
import logging
import os
import struct
import threading
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Literal

from pydicom import dcmread
from pydicom.charset import convert_encodings
from pydicom.dataset import Dataset
from pydicom.uid import DeflatedExplicitVRLittleEndian, ImplicitVRLittleEndian

from consilium.archive.dicomjson import (
    BINARY_VRS,
    KNOWN_VRS,
    PIXEL_TAGS,
    dataset_json,
    first_vr,
    marker_bulk,
    value_json,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PixelElement:
    """Where the pixel data element of a stored file is (non-deflated files only)."""

    tag: int
    vr: str
    value_offset: int  # file offset of the value (first item tag when encapsulated)
    length: int  # 0xFFFFFFFF: encapsulated


@dataclass(frozen=True)
class StoredHeader:
    dataset: Dataset  # everything before the pixel data, file meta in .file_meta
    transfer_syntax: str
    pixel: PixelElement | None
    deflated_pixel_vr: str | None = None  # deflated files: pixel VR, offsets unknown


def _pixel_at(fp: BinaryIO, transfer_syntax: str, ds: Dataset) -> PixelElement | None:
    start = fp.tell()
    head = fp.read(12)
    if len(head) < 8:
        return None
    little = transfer_syntax != "1.2.840.10008.1.2.2"
    order: Literal["little", "big"] = "little" if little else "big"
    tag = (int.from_bytes(head[0:2], order) << 16) | int.from_bytes(head[2:4], order)
    if tag not in PIXEL_TAGS:
        return None
    if transfer_syntax == ImplicitVRLittleEndian:
        length = int.from_bytes(head[4:8], "little")
        bits = int(ds.get("BitsAllocated", 16) or 16)
        vr = {0x7FE00008: "OF", 0x7FE00009: "OD"}.get(tag, "OW" if bits > 8 else "OB")
        return PixelElement(tag, vr, start + 8, length)
    vr = head[4:6].decode("ascii", "replace")
    if len(head) < 12:
        return None
    length = int.from_bytes(head[8:12], order)
    return PixelElement(tag, vr, start + 12, length)


def read_stored_header(path: Path) -> StoredHeader:
    """The header of a stored PS3.10 file and where its pixel data is."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with path.open("rb") as fp:
            ds = dcmread(fp, stop_before_pixels=True)
            transfer_syntax = str(ds.file_meta.get("TransferSyntaxUID", ""))
            if transfer_syntax == DeflatedExplicitVRLittleEndian:
                fp.seek(0)
                full = dcmread(fp)
                pixel = next((full[t] for t in PIXEL_TAGS if t in full), None)
                return StoredHeader(ds, transfer_syntax, None,
                                    first_vr(pixel.VR) if pixel is not None else None)
            return StoredHeader(ds, transfer_syntax, _pixel_at(fp, transfer_syntax, ds))


HEAD_BYTES = 64 * 1024  # the header of nearly every file; more is read when it is longer


def instance_metadata(path: Path) -> bytes:
    """The DICOM JSON of a stored instance, bulk data URIs as markers (see :func:`with_base`).

    Files in an explicit VR little endian encoding (all but implicit, big endian and deflated:
    nearly everything a modality sends) are walked here directly, several times faster than
    pydicom reads them; anything unusual falls back to pydicom.
    """
    with path.open("rb") as fp:
        head = fp.read(HEAD_BYTES)
        try:
            try:
                out = _fast_metadata(memoryview(head))
            except _NeedMore:
                fp.seek(0)
                out = _fast_metadata(memoryview(fp.read(256 * 2**20)))
        except (_Fallback, struct.error, IndexError, ValueError, LookupError, RecursionError):
            out = None
    if out is not None:
        return json.dumps(out, ensure_ascii=False, separators=(",", ":")).encode()
    try:
        header = read_stored_header(path)
        out = dataset_json(header.dataset, "", marker_bulk)
        pixel_vr = header.pixel.vr if header.pixel else header.deflated_pixel_vr
        if pixel_vr is not None:
            tag = header.pixel.tag if header.pixel else 0x7FE00010
            out[f"{tag:08X}"] = {"vr": pixel_vr, "BulkDataURI": marker_bulk(f"{tag:08X}")}
    except OSError:
        raise
    except Exception as exc:  # a stored object pydicom cannot read
        # stored before ingest checked as much as it does now (or pydicom reads it worse than
        # ingest did): its UIDs from the file meta, rather than a failed request for the
        # whole study or series it is in
        log.warning("metadata of %s: only its file meta (%s: %s)", path.name,
                    type(exc).__name__, exc)
        out = _meta_only(path)
    return json.dumps(out, ensure_ascii=False, separators=(",", ":")).encode()


def _meta_only(path: Path) -> dict[str, Any]:
    from consilium.archive.dicomfile import UnreadableDicom, split_part10

    with path.open("rb") as fp:
        head = fp.read(HEAD_BYTES)
    try:
        meta = split_part10(head).meta
    except UnreadableDicom:
        return {}
    out: dict[str, Any] = {}
    for key, keyword in (("00080016", "MediaStorageSOPClassUID"),
                         ("00080018", "MediaStorageSOPInstanceUID")):
        value = str(meta.get(keyword, "")).strip()
        out[key] = {"vr": "UI", "Value": [value]} if value else {"vr": "UI"}
    return out


class _Fallback(Exception):
    """This file needs pydicom's reader."""


class _NeedMore(_Fallback):
    """The header goes on past the bytes read."""


_U16 = struct.Struct("<H").unpack_from
_U32 = struct.Struct("<I").unpack_from
_ELEMENT = struct.Struct("<HH2sH").unpack_from
"""group, element, VR and the short length of an explicit VR little endian element, in one
call: the walk is per element Python, and one unpack instead of three is a fifth of it."""
_VR_OF = {vr.encode(): vr for vr in KNOWN_VRS}
_KEYS: dict[int, str] = {}
_MAX_KEYS = 65536
_SAME: dict[tuple[str, bytes, tuple[str, ...]], dict[str, Any]] = {}
"""Attributes already converted, by VR, value bytes and character sets: the instances of a
series repeat most of theirs (patient, study, series, geometry but the position: 60 of the 69
of a demo CT slice), and converting them again was half of the walk. The dicts are shared
between answers and never changed after they are made."""
_SAME_MAX = 8192
_SAME_VALUE_BYTES = 256
_LONG = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"})
_UNDEFINED = 0xFFFFFFFF
_SLOW_SYNTAXES = frozenset({"1.2.840.10008.1.2", "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99"})


def _fast_metadata(buf: memoryview) -> dict[str, Any] | None:
    """The JSON of a PS3.10 file's dataset in explicit VR little endian; None for other
    encodings. Raises _Fallback (or a decoding error) for anything it does not handle."""
    if len(buf) < 144 or bytes(buf[128:132]) != b"DICM":
        return None
    if _U16(buf, 132)[0] != 0x0002 or _U16(buf, 134)[0] != 0x0000 or bytes(buf[136:138]) != b"UL":
        return None  # no group length in the file meta: let pydicom find the dataset
    start = 144 + _U32(buf, 140)[0]
    syntax = ""
    pos = 144
    while pos < start:  # the file meta: only its transfer syntax matters here
        group, element = _U16(buf, pos)[0], _U16(buf, pos + 2)[0]
        vr = bytes(buf[pos + 4 : pos + 6]).decode("ascii")
        if vr in _LONG:
            length, pos = _U32(buf, pos + 8)[0], pos + 12
        else:
            length, pos = _U16(buf, pos + 6)[0], pos + 8
        if group == 0x0002 and element == 0x0010:
            syntax = bytes(buf[pos : pos + length]).decode("ascii").strip(" \x00")
        pos += length
    if not syntax or syntax in _SLOW_SYNTAXES:
        return None
    out, _ = _walk(buf, start, len(buf), "", convert_encodings("ISO_IR 6"), top=True)
    return out


def _walk(buf: memoryview, pos: int, end: int, prefix: str, encodings: list[str], top: bool
          ) -> tuple[dict[str, Any], int]:
    """Elements from ``pos`` to ``end`` (or to the item delimiter: ``end`` = -1)."""
    out: dict[str, Any] = {}
    size = len(buf)
    limit = size if end < 0 else end
    charsets = tuple(encodings)
    while pos < limit:
        if pos + 8 > size:
            raise _NeedMore("header longer than the buffer")
        group, element, vr_bytes, short = _ELEMENT(buf, pos)
        tag = (group << 16) | element
        if group == 0xFFFE:
            if element == 0xE00D and end < 0:
                return out, pos + 8
            raise _Fallback(f"unexpected delimiter at {pos}")
        if top and tag in PIXEL_TAGS:
            vr = vr_bytes.decode("ascii")
            out[f"{tag:08X}"] = {"vr": vr, "BulkDataURI": marker_bulk(f"{tag:08X}")}
            return out, pos
        vr = _VR_OF.get(vr_bytes, "")
        if not vr:
            raise _Fallback(f"VR {vr_bytes.decode('ascii', 'replace')!r} at {pos}")
        if vr in _LONG:
            length, pos = _U32(buf, pos + 8)[0], pos + 12
        else:
            length, pos = short, pos + 8
        key = _KEYS.get(tag)
        if key is None:
            key = f"{tag:08X}"
            if len(_KEYS) < _MAX_KEYS:
                _KEYS[tag] = key
        path = prefix + key
        if vr == "SQ":
            items, pos = _sequence(buf, pos, length, path, encodings)
            if element != 0:
                out[key] = {"vr": "SQ", "Value": items} if items else {"vr": "SQ"}
            continue
        if length == _UNDEFINED:
            raise _Fallback(f"undefined length of {key}")
        if pos + length > len(buf):
            raise _NeedMore(f"the value of {key} goes on past the buffer")
        value = bytes(buf[pos : pos + length])
        pos += length
        if element == 0 or group == 0x0002:
            continue  # group lengths
        if tag == 0x00080005:
            encodings = convert_encodings(
                [v.strip() for v in value.decode("ascii", "replace").split("\\")] or "ISO_IR 6"
            )
            charsets = tuple(encodings)
        if vr in BINARY_VRS or length > _SAME_VALUE_BYTES:  # bulk data URIs name their path
            out[key] = value_json(vr, value, True, path, marker_bulk, encodings)
            continue
        same = (vr, value, charsets)
        converted = _SAME.get(same)
        if converted is None:
            converted = value_json(vr, value, True, path, marker_bulk, encodings)
            if len(_SAME) >= _SAME_MAX:
                _SAME.clear()
            _SAME[same] = converted
        out[key] = converted
    if end >= 0 and pos != end:
        raise _Fallback("element overruns its item")
    return out, pos


def _sequence(buf: memoryview, pos: int, length: int, path: str, encodings: list[str]
              ) -> tuple[list[dict[str, Any]], int]:
    items: list[dict[str, Any]] = []
    end = -1 if length == _UNDEFINED else pos + length
    while True:
        if end >= 0 and pos >= end:
            return items, pos
        if pos + 8 > len(buf):
            raise _NeedMore("sequence longer than the buffer")
        group, element = _U16(buf, pos)[0], _U16(buf, pos + 2)[0]
        item_length = _U32(buf, pos + 4)[0]
        pos += 8
        if group == 0xFFFE and element == 0xE0DD:
            return items, pos
        if group != 0xFFFE or element != 0xE000:
            raise _Fallback("not an item")
        prefix = f"{path}/{len(items) + 1}/"
        if item_length == _UNDEFINED:
            item, pos = _walk(buf, pos, -1, prefix, encodings, top=False)
        else:
            item, pos = _walk(buf, pos, pos + item_length, prefix, encodings, top=False)
        items.append(item)


METADATA_FORMAT = 2  # bump when the JSON produced changes: old cache files are then ignored


def metadata_cache_dir(data_dir: Path) -> Path:
    return data_dir / "cache" / "metadata"


class MetadataCache:
    """Instance metadata by content hash: an LRU in memory over files in ``directory``."""

    def __init__(self, directory: Path | None, max_bytes: int = 128 * 2**20) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self._memory: OrderedDict[str, bytes] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    def _file(self, sha256: str) -> Path | None:
        if self.directory is None:
            return None
        return self.directory / f"v{METADATA_FORMAT}" / sha256[:2] / f"{sha256}.json"

    def cached(self, sha256: str) -> bytes | None:
        with self._lock:
            hit = self._memory.get(sha256)
            if hit is not None:
                self._memory.move_to_end(sha256)
                return hit
        file = self._file(sha256)
        if file is not None:
            try:
                data = file.read_bytes()
            except OSError:
                return None
            self._remember(sha256, data)
            return data
        return None

    def _remember(self, sha256: str, data: bytes) -> None:
        with self._lock:
            if sha256 in self._memory:
                return
            self._memory[sha256] = data
            self._size += len(data)
            while self._size > self.max_bytes and self._memory:
                _, old = self._memory.popitem(last=False)
                self._size -= len(old)

    def get(self, sha256: str, path: Path) -> bytes:
        """The metadata of the file ``path`` whose content hash is ``sha256``."""
        hit = self.cached(sha256)
        if hit is not None:
            return hit
        data = instance_metadata(path)
        self._remember(sha256, data)
        self.store(sha256, data)
        return data

    def store(self, sha256: str, data: bytes) -> None:
        """Write ``data`` to the file cache (without fsync, replaced atomically)."""
        file = self._file(sha256)
        if file is None:
            return
        try:
            file.parent.mkdir(parents=True, exist_ok=True)
            tmp = file.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
            tmp.write_bytes(data)
            os.replace(tmp, file)
        except OSError:
            pass


def compute_metadata(items: list[tuple[str, str]], cache_dir: str | None) -> list[bytes]:
    """Metadata of several stored files ``(sha256, path)``, written to the file cache too; run
    in worker processes when a request finds many instances not cached yet."""
    cache = MetadataCache(Path(cache_dir) if cache_dir else None, max_bytes=0)
    return [cache.get(sha256, Path(path)) for sha256, path in items]


def store_metadata(items: list[tuple[str, bytes]], cache_dir: str) -> None:
    """Write metadata computed before (``(sha256, data)``) to the file cache; run in a worker
    process after the answer that needed it (writing 300 files costs more than computing
    their metadata)."""
    cache = MetadataCache(Path(cache_dir), max_bytes=0)
    for sha256, data in items:
        cache.store(sha256, data)


def remember(cache: MetadataCache, sha256: str, data: bytes) -> None:
    """Put metadata computed elsewhere into ``cache``'s memory."""
    cache._remember(sha256, data)
