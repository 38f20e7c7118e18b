"""Pixel data checked before anything decodes it: declared size against the configured limits,
encapsulation against the transfer syntax, and the codestreams' own image size.

Why: a decoder allocates what the object *declares*. A 7.8 KB RLE object declaring 65535 x 65535
pixels was accepted, and one ``/rendered`` request then took 8 GB for 40 s. So the same
:class:`PixelLimits` are checked

* at ingest (:func:`ingest_problems`: declared rows x columns per frame, and rows x columns x
  samples x bytes per sample x frames per instance; plus every JPEG/JPEG-LS/JPEG 2000 codestream
  start in the fragments, whose own header says how much its decoder will allocate), and
* before every decode (:func:`check_decode`: rendered images, thumbnails, frames and whole
  instances transcoded, bulk data), for objects stored before the limits existed or under
  larger ones.

Encapsulation: native pixel data labelled with a compressed transfer syntax (or encapsulated
fragments labelled native) contradict their transfer syntax, and so does a first fragment
without its codec's marker (JPEG SOI, JPEG 2000 SOC/SIZ or JP2 signature, the RLE header);
such objects are refused at ingest (:data:`Refusal.UNREADABLE`), never stored to fail later.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from consilium.archive.dicomfile import InstanceHeader
from consilium.settings import Settings

NATIVE_SYNTAXES = frozenset({ImplicitVRLittleEndian, ExplicitVRLittleEndian,
                             ExplicitVRBigEndian, DeflatedExplicitVRLittleEndian})
JPEG_SYNTAXES = frozenset({f"1.2.840.10008.1.2.4.{n}" for n in (
    50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 62, 63, 64, 65, 66, 70, 80, 81)})
J2K_SYNTAXES = frozenset({f"1.2.840.10008.1.2.4.{n}" for n in (90, 91, 92, 93, 201, 202, 203)})
RLE_SYNTAX = "1.2.840.10008.1.2.5"
_JP2_SIGNATURE = b"\x00\x00\x00\x0cjP  \r\n\x87\n"
_SOF_MARKERS = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD,
                          0xCE, 0xCF, 0xF7})  # F7: JPEG-LS SOF55
_CODESTREAM_HEAD = 64 * 1024  # markers before the frame header: tables, comments, APPn


@dataclass(frozen=True)
class PixelLimits:
    """The largest images the archive takes and decodes (``pixels.*`` settings)."""

    max_frame_pixels: int = 8192 * 8192
    max_decoded_bytes: int = 2 * 2**30  # one instance, every frame decoded

    @classmethod
    def of(cls, settings: Settings) -> PixelLimits:
        return cls(settings.pixels_max_frame_pixels, settings.pixels_max_instance_mb * 2**20)

    def problem(self, rows: int | None, columns: int | None, frames: int | None = 1,
                samples: int | None = 1, bits_allocated: int | None = 16) -> str | None:
        """Why an image of this declared size may not be decoded here, or None."""
        rows, columns = max(rows or 0, 0), max(columns or 0, 0)
        pixels = rows * columns
        if pixels > self.max_frame_pixels:
            return (f"{columns}x{rows} pixels per frame: over the limit of "
                    f"{self.max_frame_pixels} (pixels.max_frame_pixels)")
        size = (pixels * max(samples or 1, 1) * max(frames or 1, 1)
                * max(-(-(bits_allocated or 16) // 8), 1))
        if size > self.max_decoded_bytes:
            return (f"{size} bytes decoded ({columns}x{rows}, {max(frames or 1, 1)} frames): "
                    f"over the limit of {self.max_decoded_bytes} (pixels.max_instance_mb)")
        return None


class PixelsTooLarge(ValueError):
    """The declared (or encoded) image is larger than the limits allow."""


def _fields(ds: Any) -> tuple[int | None, ...]:
    def number(keyword: str) -> int | None:
        try:
            value = ds.get(keyword)
            return None if value is None or value == "" else int(value)
        except (TypeError, ValueError, OverflowError):
            return None

    return (number("Rows"), number("Columns"), number("NumberOfFrames"),
            number("SamplesPerPixel"), number("BitsAllocated"))


def check_decode(ds: Any, limits: PixelLimits, frames: int | None = None) -> None:
    """Raise :class:`PixelsTooLarge` before ``frames`` frames (all of them when None) of the
    pydicom dataset ``ds`` are decoded, if that is over ``limits``."""
    rows, columns, count, samples, bits = _fields(ds)
    wanted = max(count or 1, 1) if frames is None else frames
    problem = limits.problem(rows, columns, wanted, samples, bits)
    if problem is not None:
        raise PixelsTooLarge(problem)


def check_codestream(frame: bytes | memoryview, transfer_syntax: str, limits: PixelLimits
                     ) -> None:
    """Raise :class:`PixelsTooLarge` if a compressed frame's own header declares an image over
    the limits (its decoder allocates what the codestream says, not what Rows/Columns say)."""
    size = codestream_size(frame, transfer_syntax)
    if size is not None:
        problem = limits.problem(size[0], size[1], 1, size[2], 16)
        if problem is not None:
            raise PixelsTooLarge(f"codestream of {problem}")


def codestream_size(data: bytes | memoryview, transfer_syntax: str
                    ) -> tuple[int, int, int] | None:
    """(rows, columns, components) from a JPEG/JPEG-LS frame header or a JPEG 2000 SIZ marker
    at the start of ``data``; None when it has none (or the syntax is neither). Reads the
    markers in place: a multi-frame object has thousands of these."""
    view = memoryview(data)[:_CODESTREAM_HEAD]
    if transfer_syntax in JPEG_SYNTAXES:
        return _jpeg_size(view)
    if transfer_syntax in J2K_SYNTAXES:
        return _j2k_size(bytes(view[:1024]))
    return None


def _jpeg_size(head: memoryview) -> tuple[int, int, int] | None:
    if len(head) < 4 or head[0] != 0xFF or head[1] != 0xD8:
        return None
    pos = 2
    while pos + 4 <= len(head):
        if head[pos] != 0xFF:
            return None
        marker = head[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # markers without a length
            pos += 2
            continue
        length = struct.unpack_from(">H", head, pos + 2)[0]
        if marker in _SOF_MARKERS and pos + 10 <= len(head):
            rows, columns = struct.unpack_from(">HH", head, pos + 5)
            return rows, columns, head[pos + 9]
        if marker == 0xDA:  # start of scan before any frame header
            return None
        pos += 2 + length
    return None


def _j2k_size(head: bytes) -> tuple[int, int, int] | None:
    at = head.find(b"\xff\x4f\xff\x51")  # SOC then SIZ (also inside a JP2 'jp2c' box)
    if at < 0 or at + 4 + 38 > len(head):
        return None
    # SIZ: Lsiz Rsiz Xsiz Ysiz XOsiz YOsiz XTsiz YTsiz XTOsiz YTOsiz Csiz
    xsiz, ysiz, xosiz, yosiz = struct.unpack_from(">IIII", head, at + 8)
    components = struct.unpack_from(">H", head, at + 4 + 36)[0]
    return max(ysiz - yosiz, 0), max(xsiz - xosiz, 0), components


def _first_fragment_problem(fragment: memoryview, transfer_syntax: str) -> str | None:
    """Why the first fragment of frame 1 is not what its transfer syntax says, or None."""
    head = bytes(fragment[:16])
    if transfer_syntax in JPEG_SYNTAXES and not head.startswith(b"\xff\xd8"):
        return "the first fragment is not a JPEG codestream (no SOI marker)"
    if transfer_syntax in J2K_SYNTAXES and not (
            head.startswith(b"\xff\x4f\xff\x51") or head.startswith(_JP2_SIGNATURE)):
        return "the first fragment is not a JPEG 2000 codestream (no SOC/SIZ or JP2 signature)"
    if transfer_syntax == RLE_SYNTAX:
        if len(head) < 8:
            return "the first fragment is too short for an RLE header"
        segments, first = struct.unpack_from("<II", head)
        if not 1 <= segments <= 15 or first != 64:
            return "the first fragment is not an RLE header (segment count or first offset)"
    return None


def ingest_problems(header: InstanceHeader, dataset: memoryview, transfer_syntax: str,
                    limits: PixelLimits) -> tuple[str, str] | None:
    """("unreadable" | "too-large", reason) for pixel data that must not be stored, or None.

    ``dataset`` is the buffer :func:`~consilium.archive.dicomfile.check_structure` walked
    (offsets of ``header.pixel`` point into it). Deflated datasets were inflated for the walk:
    their layout is not available here, so only the declared size is checked for them."""
    layout = header.pixel
    if layout is None:
        return None
    problem = limits.problem(header.rows, header.columns, header.number_of_frames,
                             header.samples_per_pixel, header.bits_allocated)
    if problem is not None:
        return "too-large", problem
    if transfer_syntax == DeflatedExplicitVRLittleEndian:
        return None
    native = transfer_syntax in NATIVE_SYNTAXES
    if native and layout.encapsulated:
        return "unreadable", ("encapsulated pixel data in a native transfer syntax "
                              f"({transfer_syntax})")
    if not native and not layout.encapsulated and layout.length > 0:
        return "unreadable", f"native pixel data labelled with {transfer_syntax} (not encapsulated)"
    if not layout.encapsulated or len(layout.fragments) < 2:
        return None  # an offset table alone: nothing to decode, nothing to check
    offset, length = layout.fragments[1]
    fragment = dataset[offset : offset + length]
    marker = _first_fragment_problem(fragment, transfer_syntax)
    if marker is not None:
        return "unreadable", marker
    for offset, length in layout.fragments[1:]:  # every frame's codestream header
        if length < 4:
            continue
        try:
            check_codestream(dataset[offset : offset + length], transfer_syntax, limits)
        except PixelsTooLarge as exc:
            return "too-large", str(exc)
    return None
