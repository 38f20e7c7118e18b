"""The DICOM JSON Model (PS3.18 F.2): datasets, encoded values and index values as JSON.

Encoding rules kept here, in one place:

* an object keyed by the tag as eight upper-case hex digits; every attribute has ``"vr"``;
* a value is ``"Value"`` (always an array), ``"BulkDataURI"`` or ``"InlineBinary"`` (base64);
  an empty attribute has none of them; an empty item of a multi-valued attribute is ``null``;
* PN values are objects with ``Alphabetic`` / ``Ideographic`` / ``Phonetic`` (empty groups left
  out); IS, DS and the binary numeric VRs are JSON numbers (SV/UV outside +-2^53 as strings);
  AT values are ``"GGGGEEEE"``; SQ values are arrays of objects;
* group lengths (gggg,0000) and the file meta group are not part of a dataset's JSON.

Bulk data URIs of cached instance metadata (:mod:`consilium.archive.metadata`) are kept as a
marker (U+FFFF, which is removed from every text value, so it cannot occur otherwise) followed
by the path below the instance; :func:`with_base` puts the instance URL in its place when the
metadata is served, so the cache does not depend on the host name of the request.
"""
from __future__ import annotations

import base64
import logging
import math
import struct
import warnings
from collections.abc import Callable, Iterable
from functools import lru_cache
from typing import Any

from pydicom.charset import convert_encodings, decode_bytes
from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

log = logging.getLogger(__name__)

BULK_MARK = "\uffff"
_BULK_MARK_UTF8 = BULK_MARK.encode()
BULK_THRESHOLD = 1024  # binary values above this many bytes become BulkDataURIs
BINARY_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})
_NUMBER_VRS = frozenset({"FL", "FD", "SL", "SS", "UL", "US", "SV", "UV"})
PIXEL_TAGS = frozenset({0x7FE00008, 0x7FE00009, 0x7FE00010})
_PN_GROUPS = ("Alphabetic", "Ideographic", "Phonetic")
_SAFE_INT = 2**53
KNOWN_VRS = frozenset({
    "AE", "AS", "AT", "CS", "DA", "DS", "DT", "FL", "FD", "IS", "LO", "LT", "OB", "OD", "OF",
    "OL", "OV", "OW", "PN", "SH", "SL", "SQ", "SS", "ST", "SV", "TM", "UC", "UI", "UL", "UN",
    "UR", "US", "UT", "UV",
})


class UnknownAttribute(ValueError):
    """A keyword or tag that the data dictionary does not know."""


@lru_cache(maxsize=4096)
def resolve_attribute(name: str) -> tuple[int, str]:
    """``PatientName`` or ``00100010`` -> (tag, VR). Private or unknown tags written as eight hex
    digits are accepted with VR UN; unknown keywords raise :class:`UnknownAttribute`."""
    text = name.strip()
    if len(text) == 8 and all(c in "0123456789abcdefABCDEF" for c in text):
        tag = int(text, 16)
        try:
            return tag, first_vr(dictionary_VR(tag))
        except KeyError:
            return tag, "UN"
    tag_value = tag_for_keyword(text)
    if tag_value is None:
        raise UnknownAttribute(f"unknown attribute {name!r} (neither a keyword nor a tag)")
    return int(tag_value), first_vr(dictionary_VR(tag_value))


def keyword_of(tag: int) -> str:
    return keyword_for_tag(tag) or f"{tag:08X}"


def tag_key(tag: int) -> str:
    return f"{tag:08X}"


def first_vr(vr: str) -> str:
    """An ambiguous dictionary VR ('US or SS', 'OB or OW') resolved to its first choice."""
    return vr.split(" or ")[0] if " or " in vr else vr


def _clean(text: str) -> str:
    if "\x00" in text or BULK_MARK in text:
        text = text.replace("\x00", "").replace(BULK_MARK, "")
    return text


def _number(value: Any, integer: bool) -> int | float | str | None:
    try:
        number = float(value) if not integer else int(value)
    except (TypeError, ValueError):
        try:
            number = float(str(value).strip())
        except ValueError:
            return None
    if isinstance(number, float):
        if math.isnan(number) or math.isinf(number):
            return None
        if number.is_integer() and abs(number) < _SAFE_INT:
            return int(number)
    return number


def _pn(value: Any) -> dict[str, str] | None:
    text = _clean(str(value))
    if not text:
        return None
    groups = text.split("=")
    out = {name: g for name, g in zip(_PN_GROUPS, groups, strict=False) if g}
    return out or None


def _values(vr: str, value: Any) -> list[Any]:
    items = list(value) if isinstance(value, MultiValue | list | tuple) else [value]
    if vr == "PN":
        return [_pn(v) if v is not None else None for v in items]
    if vr in ("IS", "DS"):
        return [None if v is None or v == "" else _number(v, vr == "IS") for v in items]
    if vr in _NUMBER_VRS:
        out: list[Any] = []
        for v in items:
            n = _number(v, vr not in ("FL", "FD"))
            if vr in ("SV", "UV") and isinstance(n, int) and abs(n) >= _SAFE_INT:
                n = str(v)
            out.append(n)
        return out
    if vr == "AT":
        return [f"{int(v):08X}" if v is not None else None for v in items]
    return [None if v is None or v == "" else _clean(str(v)) for v in items]


def _is_empty(value: Any) -> bool:
    if value is None:
        return True
    if type(value).__name__ == "PersonName":
        return str(value).strip() == ""
    if isinstance(value, str | bytes | bytearray | MultiValue | list | tuple):
        return len(value) == 0
    return False


BulkNamer = Callable[[str], str]


def element_json(elem: DataElement, path: str, bulk: BulkNamer | None) -> dict[str, Any]:
    """One attribute. ``path`` names the element below its instance (``tag[/item/tag]...``);
    ``bulk`` makes a BulkDataURI from it (None: everything inline)."""
    vr = first_vr(elem.VR)
    out: dict[str, Any] = {"vr": vr}
    value = elem.value
    if vr == "SQ":
        if value:
            out["Value"] = [
                dataset_json(item, f"{path}/{index}/", bulk) for index, item in enumerate(value, 1)
            ]
        return out
    if _is_empty(value):
        return out
    if vr in BINARY_VRS:
        if isinstance(value, MultiValue | list | tuple):  # pydicom may split UN/OB oddly
            value = b"".join(v if isinstance(v, bytes) else bytes(v) for v in value)
        if not isinstance(value, bytes | bytearray):
            value = bytes(value)
        if bulk is not None and len(value) > BULK_THRESHOLD:
            out["BulkDataURI"] = bulk(path)
        else:
            out["InlineBinary"] = base64.b64encode(value).decode("ascii")
        return out
    values = _values(vr, value)
    if values:
        out["Value"] = values
    return out


def dataset_json(ds: Dataset, prefix: str = "", bulk: BulkNamer | None = None,
                 encodings: list[str] | None = None) -> dict[str, Any]:
    """A dataset (or sequence item) in the DICOM JSON model.

    Values still raw (as read from the file) are converted here straight from their bytes,
    which is several times faster than pydicom's element conversion; pydicom converts only what
    needs its dictionary or context (implicit VR, ambiguous VRs, sequences).
    """
    out: dict[str, Any] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if "SpecificCharacterSet" in ds or encodings is None:
            encodings = convert_encodings(ds.get("SpecificCharacterSet") or "ISO_IR 6")
        for base_tag in sorted(ds.keys()):
            tag = int(base_tag)
            if tag & 0xFFFF == 0 or tag >> 16 == 0x0002:
                continue  # group lengths and file meta are not attributes of the dataset
            key = f"{tag:08X}"
            try:
                raw = ds.get_item(tag)
                fast = _raw_json(raw, prefix + key, bulk, encodings) \
                    if isinstance(raw, RawDataElement) else None
                if fast is not None:
                    out[key] = fast
                    continue
                elem = ds[tag]
                if elem.VR == "SQ":
                    out[key] = _sequence_json(elem, prefix + key, bulk, encodings)
                else:
                    out[key] = element_json(elem, prefix + key, bulk)
            except (ValueError, TypeError, LookupError, OverflowError, struct.error):
                out[key] = {"vr": first_vr(ds[tag].VR)}  # undecodable value: present, empty
    return out


def _sequence_json(elem: DataElement, path: str, bulk: BulkNamer | None,
                   encodings: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {"vr": "SQ"}
    if elem.value:
        out["Value"] = [dataset_json(item, f"{path}/{index}/", bulk, encodings)
                        for index, item in enumerate(elem.value, 1)]
    return out


_STRUCT = {"US": "H", "SS": "h", "UL": "I", "SL": "i", "FL": "f", "FD": "d", "SV": "q",
           "UV": "Q"}
_CHARSET_VRS = frozenset({"SH", "LO", "ST", "LT", "UC", "UT", "PN"})
_SINGLE_VRS = frozenset({"LT", "ST", "UT", "UR"})
_STRIP_BOTH = frozenset({"AE", "CS", "DA", "DS", "DT", "IS", "TM", "UI", "AS"})
_PN_DELIMITERS = {0x5C, 0x5E, 0x3D}  # where ISO 2022 code extensions return to the default
_VALUE_DELIMITER = {0x5C}


def _raw_json(raw: RawDataElement, path: str, bulk: BulkNamer | None, encodings: list[str]
              ) -> dict[str, Any] | None:
    """An attribute straight from its encoded value; None where pydicom must convert it."""
    vr = raw.VR
    if vr is None or vr == "SQ" or " or " in vr or vr not in KNOWN_VRS:
        return None
    value = raw.value
    if raw.length == 0xFFFFFFFF or (value is not None and not isinstance(value, bytes)):
        return None
    return value_json(vr, value or b"", raw.is_little_endian, path, bulk, encodings)


def value_json(vr: str, value: bytes, little: bool, path: str, bulk: BulkNamer | None,
                encodings: list[str]) -> dict[str, Any]:
    """An attribute from its VR and encoded value bytes."""
    out: dict[str, Any] = {"vr": vr}
    if not value:
        return out
    if vr in BINARY_VRS:
        if bulk is not None and len(value) > BULK_THRESHOLD:
            out["BulkDataURI"] = bulk(path)
        else:
            out["InlineBinary"] = base64.b64encode(value).decode("ascii")
        return out
    order = "<" if little else ">"
    if vr in _STRUCT:
        code = _STRUCT[vr]
        count = len(value) // struct.calcsize(code)
        if count == 0:
            return out
        numbers = struct.unpack(f"{order}{count}{code}", value[: count * struct.calcsize(code)])
        out["Value"] = _values(vr, list(numbers))
        return out
    if vr == "AT":
        pairs = struct.unpack(f"{order}{len(value) // 2}H", value[: len(value) // 4 * 4])
        out["Value"] = [f"{pairs[i]:04X}{pairs[i + 1]:04X}" for i in range(0, len(pairs), 2)]
        return out
    if vr in _CHARSET_VRS:
        text = decode_bytes(value, encodings, _PN_DELIMITERS if vr == "PN" else
                            set() if vr in _SINGLE_VRS else _VALUE_DELIMITER)
    else:
        text = value.decode("ascii", "replace")
    items = [text] if vr in _SINGLE_VRS else text.split("\\")
    if vr in _STRIP_BOTH:
        items = [i.strip(" \x00") for i in items]
    else:
        items = [i.rstrip(" \x00") for i in items]
    if len(items) == 1 and items[0] == "":
        return out
    values = _values(vr, items)
    if any(v is not None for v in values):
        out["Value"] = values
    return out


def marker_bulk(path: str) -> str:
    """The cached form of a BulkDataURI: the marker, then the path below the instance."""
    return f"{BULK_MARK}bulkdata/{path}"


def with_base(cached: bytes, instance_url: str) -> bytes:
    """Cached instance metadata with its bulk data URIs made absolute."""
    if _BULK_MARK_UTF8 not in cached:
        return cached
    return cached.replace(_BULK_MARK_UTF8, instance_url.encode() + b"/")


def join_array(items: Iterable[bytes]) -> bytes:
    """A JSON array of already-encoded objects."""
    return b"[" + b",".join(items) + b"]"


def index_value_json(vr: str, value: Any) -> dict[str, Any]:
    """An attribute from a value kept in the index (text in DICOM's backslash form, or int)."""
    out: dict[str, Any] = {"vr": vr}
    if value is None or value == "":
        return out
    if isinstance(value, str) and vr not in ("LT", "ST", "UT", "UR"):
        values = _values(vr, value.split("\\"))
    else:
        values = _values(vr, value)
    if any(v is not None for v in values):
        out["Value"] = values
    return out
