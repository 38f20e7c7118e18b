"""Stored pixel data in another transfer syntax: frames and whole instances re-encoded for
WADO-RS (and for retrieval over DIMSE to a peer that did not accept the stored syntax).

Nothing stored is ever changed: what is converted is a copy on the way out. Lossless targets
give back the stored pixel values exactly (JPEG-LS lossless, JPEG 2000 lossless, RLE, the
native syntaxes); the one lossy target, JPEG-LS near-lossless (1.2.840.10008.1.2.4.81), is the
viewer's *preview*: every pixel within ``near`` of the stored value (``transcode.preview_near``),
about a tenth of the lossless size at 32 HU, so a reader 200 km away sees every slice early and
then the lossless one.

Why JPEG-LS for the viewer (bench/README.md, "Reading over a regional link"): on the demo CT
(512x512, 16-bit signed) JPEG-LS lossless is 187 KB a slice (2.7:1) and encodes in ~12 ms;
JPEG 2000 lossless 192 KB and ~55 ms; RLE 285 KB and ~75 ms. Cornerstone3D decodes all three;
HTJ2K would decode faster still, but no encoder on PyPI was mature enough to serve it (see the
README's conformance table), so it is refused with 406 and a reason.

Why on first read and not at ingest: encoding keeps up with the link by far (~80 slices/s on one
core against ~13 lossless slices/s through 20 Mbit/s), while adding it to ingest would cut
C-STORE throughput two- to threefold for studies that may never be read remotely. What was
encoded is kept in a bounded in-memory cache (:class:`FrameCache`, ``transcode.cache_mb``), so
the second reader of a study, and the lossless stage after the preview stage of the same
reader, pay nothing for it.

Every decode is preceded by the :mod:`~consilium.archive.pixel_guard` checks (through
:func:`consilium.archive.rendered.native_frames_le` and :func:`~consilium.archive.rendered.
check_convertible`): the declared size, and each codestream's own header.
"""

from __future__ import annotations

import io
import threading
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import (
    UID,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)

from consilium.archive import rendered as px
from consilium.archive.metadata import StoredHeader
from consilium.archive.pixel_guard import PixelLimits

HTJ2K_SYNTAXES = frozenset({"1.2.840.10008.1.2.4.201", "1.2.840.10008.1.2.4.202",
                            "1.2.840.10008.1.2.4.203"})


@dataclass(frozen=True)
class Target:
    """A transfer syntax this server encodes into."""

    uid: str
    media_type: str  # of a frame (PS3.18 Table 8.7.3-5)
    lossless: bool
    plugin: str = ""  # pydicom's encoding plugin


ENCODED: dict[str, Target] = {
    JPEGLSLossless: Target(JPEGLSLossless, "image/jls", True, "pyjpegls"),
    JPEGLSNearLossless: Target(JPEGLSNearLossless, "image/jls", False, "pyjpegls"),
    JPEG2000Lossless: Target(JPEG2000Lossless, "image/jp2", True, "pylibjpeg"),
    RLELossless: Target(RLELossless, "image/dicom-rle", True, ""),
}
NATIVE_TARGETS = frozenset({ExplicitVRLittleEndian, ImplicitVRLittleEndian})
# the syntax each frame media type means when the Accept header names none (PS3.18 8.7.3.5.2)
DEFAULT_SYNTAX_OF_TYPE = {
    "image/jls": JPEGLSLossless,
    "image/jp2": JPEG2000Lossless,
    "image/jphc": "1.2.840.10008.1.2.4.201",
    "image/dicom-rle": RLELossless,
    "image/x-dicom-rle": RLELossless,
    "application/octet-stream": ExplicitVRLittleEndian,
}


class NotConvertible(px.PixelError):
    """The stored pixel data cannot be given in the asked transfer syntax (says why)."""


def why_not(target: str, stored: str) -> str | None:
    """Why frames or instances stored as ``stored`` cannot be served as ``target``; None when
    they can (before looking at the pixels: see :func:`check_pixels` for those)."""
    if target in (stored, "*"):
        return None
    if target in HTJ2K_SYNTAXES:
        return f"{target} (HTJ2K) is not encoded by this server"
    if target not in ENCODED and target not in NATIVE_TARGETS:
        return f"{target} is not a transfer syntax this server converts into"
    if stored not in px.UNCOMPRESSED and not px.can_decode(stored):
        return f"the stored {stored} cannot be decoded here"
    return None


def check_pixels(ds: Dataset | Any, target: str) -> None:
    """Raise :class:`NotConvertible` if the pixel description of ``ds`` cannot be encoded as
    ``target`` (colour from lossy YBR, bit depths the codec has not)."""
    if target not in ENCODED:
        return
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    bits = int(ds.get("BitsAllocated", 16) or 16)
    photometric = str(ds.get("PhotometricInterpretation", "")).strip()
    if bits not in (8, 16):
        raise NotConvertible(f"{bits}-bit pixels are not converted to {target}")
    if samples not in (1, 3):
        raise NotConvertible(f"{samples} samples per pixel are not converted to {target}")
    if samples == 3 and photometric not in ("RGB", "YBR_FULL"):
        raise NotConvertible(f"{photometric} colour is not converted to {target}")
    if str(ds.get("PixelRepresentation", 0)) == "1" and target == JPEG2000Lossless and bits == 8:
        raise NotConvertible(f"signed 8-bit pixels are not converted to {target}")


def _near(ds: Any, near: int) -> int:
    """The near-lossless bound in stored units: ``near`` for more than 8 bits, an eighth of it
    for 8-bit data (the same share of the value range as 12-bit CT against 16-bit)."""
    bits = int(ds.get("BitsStored", 16) or 16)
    return max(1, near if bits > 8 else near // 8)


def _encode_kwargs(ds: Any, target: str, near: int) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    if target == JPEGLSNearLossless:
        kwargs["jls_error"] = _near(ds, near)
    return kwargs


def encode_frame(ds: Dataset, pixels: np.ndarray[Any, Any], target: str, near: int) -> bytes:
    """One decoded frame (as pydicom gives it raw) as a codestream of ``target``."""
    from pydicom.pixels.encoders.base import get_encoder

    check_pixels(ds, target)
    spec = ENCODED[target]
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    try:
        encoded = get_encoder(UID(target)).encode(
            np.ascontiguousarray(pixels), encoding_plugin=spec.plugin,
            rows=int(ds.Rows), columns=int(ds.Columns), samples_per_pixel=samples,
            bits_allocated=int(ds.BitsAllocated), bits_stored=int(ds.BitsStored),
            pixel_representation=int(ds.get("PixelRepresentation", 0) or 0),
            photometric_interpretation=str(ds.PhotometricInterpretation),
            number_of_frames=1, planar_configuration=0, **_encode_kwargs(ds, target, near))
    except NotConvertible:
        raise
    except Exception as exc:  # encoders raise anything from ValueError to RuntimeError
        raise NotConvertible(f"cannot encode as {target}: {exc}") from exc
    return bytes(encoded)


class FrameCache:
    """Encoded frames by (instance sha256, frame, transfer syntax), least recently used out
    first, at most ``max_bytes`` in all. Thread-safe: frames are encoded in worker threads."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[tuple[str, int, str], bytes] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: tuple[str, int, str]) -> bytes | None:
        with self._lock:
            data = self._items.get(key)
            if data is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return data

    def put(self, key: tuple[str, int, str], data: bytes) -> None:
        if len(data) > self.max_bytes:
            return
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._size -= len(old)
            self._items[key] = data
            self._size += len(data)
            while self._size > self.max_bytes:
                _, dropped = self._items.popitem(last=False)
                self._size -= len(dropped)

    @property
    def size(self) -> int:
        return self._size


def frames_as(path: Path, header: StoredHeader, numbers: list[int], target: str, *,
              sha256: str, limits: PixelLimits, near: int,
              cache: FrameCache | None = None) -> list[bytes]:
    """Frames ``numbers`` (1-based) of a stored instance encoded as ``target`` (one of
    :data:`ENCODED`), from the cache where they were encoded before."""
    check_pixels(header.dataset, target)
    out: list[bytes | None] = []
    missing: list[int] = []
    for n in numbers:
        hit = cache.get((sha256, n, target)) if cache is not None else None
        out.append(hit)
        if hit is None:
            missing.append(n)
    if missing:
        ds = header.dataset
        for n, pixels in zip(missing, _decoded(path, header, missing, limits), strict=True):
            encoded = encode_frame(ds, pixels, target, near)
            if cache is not None:
                cache.put((sha256, n, target), encoded)
            out[numbers.index(n)] = encoded
    return [b if b is not None else b"" for b in out]


def _decoded(path: Path, header: StoredHeader, numbers: list[int], limits: PixelLimits
             ) -> list[np.ndarray[Any, Any]]:
    """The frames as arrays: greyscale native data cut from the file without pydicom's full
    read (the common CT/MR case), everything else decoded by pydicom."""
    ds = header.dataset
    if int(ds.get("SamplesPerPixel", 1) or 1) == 1 and header.transfer_syntax in px.UNCOMPRESSED \
            and header.pixel is not None:
        signed = str(ds.get("PixelRepresentation", 0)) == "1"
        dtype = np.dtype(f"<{'i' if signed else 'u'}{int(ds.BitsAllocated) // 8}")
        shape = (int(ds.Rows), int(ds.Columns))
        return [np.frombuffer(data, dtype=dtype).reshape(shape)
                for data in px.native_frames_le(path, numbers, header, limits=limits)]
    return px.decoded_frames(path, numbers, limits=limits)


def instance_as(path: Path, target: str, *, limits: PixelLimits, near: int = 0) -> bytes:
    """The stored instance as a PS3.10 file in ``target`` (a native syntax or one of
    :data:`ENCODED`); the SOP Instance UID and every attribute but the pixel encoding (and,
    for the lossy target, the Lossy Image Compression attributes) unchanged."""
    if target == ExplicitVRLittleEndian:
        return px.to_explicit_le(path, limits=limits)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = px.read_stored(path)
        stored = UID(str(ds.file_meta.get("TransferSyntaxUID", "")))
        has_pixels = "PixelData" in ds
        if has_pixels and (stored.is_compressed or stored == ExplicitVRBigEndian):
            px.check_convertible(path, limits)
        try:
            if has_pixels and stored.is_compressed:
                ds.decompress(generate_instance_uid=False)
            elif has_pixels and stored == ExplicitVRBigEndian:
                arr = ds.pixel_array
                ds.PixelData = arr.astype(arr.dtype.newbyteorder("<")).tobytes()
            if target in ENCODED:
                if has_pixels:
                    _compress(ds, target, near)
                else:
                    ds.file_meta.TransferSyntaxUID = UID(target)
                implicit = False
            elif target == ImplicitVRLittleEndian:
                ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
                implicit = True
            else:
                raise NotConvertible(f"{target} is not a transfer syntax this server "
                                     "converts into")
            buffer = io.BytesIO()
            ds.save_as(buffer, implicit_vr=implicit, little_endian=True,
                       enforce_file_format=True)
        except px.PixelError:
            raise
        except Exception as exc:
            raise NotConvertible(f"cannot convert to {target}: {exc}") from exc
    return buffer.getvalue()


def _compress(ds: Dataset, target: str, near: int) -> None:
    check_pixels(ds, target)
    spec = ENCODED[target]
    before = len(ds.PixelData)
    ds.compress(UID(target), encoding_plugin=spec.plugin, generate_instance_uid=False,
                **_encode_kwargs(ds, target, near))
    if not spec.lossless:
        ratio = before / max(1, len(ds.PixelData))
        ds.LossyImageCompression = "01"
        ds.LossyImageCompressionRatio = [f"{ratio:.2f}"[:16]]
        ds.LossyImageCompressionMethod = ["ISO_14495_1"]
