"""Pixel data as WADO-RS serves it: frames in their stored or explicit little endian form, whole
instances transcoded to Explicit VR Little Endian, and rendered JPEG/PNG images and thumbnails.

Frames are cut from the stored file without decoding when the stored form is acceptable: native
pixel data is sliced at ``rows * columns * samples * bits`` per frame; encapsulated pixel data is
split into frames by pydicom (basic or extended offset table, one fragment per frame, or frame
boundaries in the codestream). Decoding (for explicit little endian frames of a compressed file
and for rendering) goes through pydicom's decoders, pylibjpeg's plugins included, and every
decode is preceded by the :mod:`~consilium.archive.pixel_guard` checks: the declared size of
what is decoded, and each compressed frame's own header, against the ``pixels.*`` limits
(:class:`PixelsTooLarge`): a decoder allocates what the object declares.
"""

from __future__ import annotations

import io
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.encaps import get_frame
from pydicom.pixels.processing import apply_color_lut, apply_modality_lut, apply_voi_lut
from pydicom.pixels.utils import pixel_array
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from consilium.archive import pixel_guard as guard
from consilium.archive.metadata import StoredHeader, read_stored_header
from consilium.archive.pixel_guard import PixelLimits

UNCOMPRESSED = frozenset(
    {ImplicitVRLittleEndian, ExplicitVRLittleEndian, ExplicitVRBigEndian,
     DeflatedExplicitVRLittleEndian}
)

# PS3.18 Table 8.7.3-5 (frames): the media type of a compressed frame, by transfer syntax
FRAME_MEDIA_TYPES: dict[str, str] = {
    "1.2.840.10008.1.2.4.50": "image/jpeg",
    "1.2.840.10008.1.2.4.51": "image/jpeg",
    "1.2.840.10008.1.2.4.57": "image/jpeg",
    "1.2.840.10008.1.2.4.70": "image/jpeg",
    "1.2.840.10008.1.2.4.80": "image/jls",
    "1.2.840.10008.1.2.4.81": "image/jls",
    "1.2.840.10008.1.2.4.90": "image/jp2",
    "1.2.840.10008.1.2.4.91": "image/jp2",
    "1.2.840.10008.1.2.4.92": "image/jpx",
    "1.2.840.10008.1.2.4.93": "image/jpx",
    "1.2.840.10008.1.2.4.201": "image/jphc",
    "1.2.840.10008.1.2.4.202": "image/jphc",
    "1.2.840.10008.1.2.4.203": "image/jphc",
    "1.2.840.10008.1.2.5": "image/dicom-rle",
}


class PixelError(ValueError):
    """The pixel data cannot be served in the form asked for (the message says why)."""


class PixelsTooLarge(PixelError):
    """Decoding what was asked would exceed the ``pixels.*`` limits."""


def _guard(ds: Dataset, limits: PixelLimits, indexes: list[int]) -> None:
    """Before decoding frames ``indexes`` (0-based) of ``ds``: their declared size, and for
    compressed data the image size each frame's codestream declares."""
    try:
        guard.check_decode(ds, limits, len(indexes))
        ts = str(ds.file_meta.get("TransferSyntaxUID", "")) if hasattr(ds, "file_meta") else ""
        if ts in guard.JPEG_SYNTAXES or ts in guard.J2K_SYNTAXES:
            count = _frame_count(ds)
            for index in indexes:
                try:
                    frame = get_frame(ds.PixelData, index, number_of_frames=count)
                except (ValueError, KeyError, IndexError, AttributeError):
                    continue  # the decoder will fail on it, with its own reason
                guard.check_codestream(frame, ts, limits)
    except guard.PixelsTooLarge as exc:
        raise PixelsTooLarge(f"not decoded here: {exc}") from exc


def read_stored(path: Path) -> Dataset:
    """A stored file as pydicom reads it; an object pydicom cannot read (stored before ingest
    checked as much as it does now) is a :class:`PixelError`, not a failed request."""
    try:
        return dcmread(path)
    except OSError:
        raise
    except Exception as exc:  # pydicom raises anything from RecursionError to KeyError
        raise PixelError(f"the stored object cannot be read ({type(exc).__name__})") from exc


def stored_header(path: Path) -> StoredHeader:
    """:func:`~consilium.archive.metadata.read_stored_header`, failing as :func:`read_stored`
    does."""
    try:
        return read_stored_header(path)
    except OSError:
        raise
    except Exception as exc:
        raise PixelError(f"the stored object cannot be read ({type(exc).__name__})") from exc


def frame_media_type(transfer_syntax: str) -> str:
    """The media type of a stored frame: its codec's, or octet-stream for native pixels."""
    return FRAME_MEDIA_TYPES.get(transfer_syntax, "application/octet-stream")


def can_decode(transfer_syntax: str) -> bool:
    """Whether frames of this transfer syntax can be decoded here (pydicom + pylibjpeg)."""
    if transfer_syntax in UNCOMPRESSED:
        return True
    from pydicom.pixels.decoders.base import get_decoder

    try:
        return bool(get_decoder(UID(transfer_syntax)).is_available)
    except (NotImplementedError, ValueError, KeyError):
        return False


def _frame_count(ds: Dataset) -> int:
    try:
        return max(1, int(ds.get("NumberOfFrames", 1) or 1))
    except (TypeError, ValueError):
        return 1


def _check_numbers(numbers: list[int], count: int) -> None:
    bad = [n for n in numbers if n < 1 or n > count]
    if bad:
        raise IndexError(f"frame {bad[0]} does not exist (the instance has {count})")


def stored_frames(path: Path, header: StoredHeader, numbers: list[int], *,
                  limits: PixelLimits) -> list[bytes]:
    """Frames ``numbers`` (1-based) exactly as stored: codestreams, or native pixels in the
    stored byte order. Raises IndexError for frames that do not exist, PixelError if the
    instance has no pixel data."""
    ds = header.dataset
    count = _frame_count(ds)
    _check_numbers(numbers, count)
    pixel = header.pixel
    if pixel is None:
        if header.deflated_pixel_vr is not None:
            return native_frames_le(path, numbers, limits=limits)
        raise PixelError("the instance has no pixel data")
    with path.open("rb") as fp:
        fp.seek(pixel.value_offset)
        value = fp.read(pixel.length) if pixel.length != 0xFFFFFFFF else fp.read()
    if pixel.length != 0xFFFFFFFF:
        return [_native_frame(ds, value, n - 1, count) for n in numbers]
    offsets = ds.get("ExtendedOffsetTable")
    extended: tuple[bytes, bytes] | None = None
    if offsets is not None and "ExtendedOffsetTableLengths" in ds:
        extended = (bytes(offsets), bytes(ds.ExtendedOffsetTableLengths))
    out = []
    for n in numbers:
        try:
            out.append(get_frame(value, n - 1, number_of_frames=count, extended_offsets=extended))
        except (ValueError, KeyError, IndexError) as exc:
            raise PixelError(f"frame {n} is not found in the encapsulated data: {exc}") from exc
    return out


def _frame_bits(ds: Dataset) -> int:
    rows, columns = int(ds.Rows), int(ds.Columns)
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    return rows * columns * samples * int(ds.BitsAllocated)


def _native_frame(ds: Dataset, value: bytes, index: int, count: int) -> bytes:
    try:
        bits = _frame_bits(ds)
    except (AttributeError, TypeError, ValueError) as exc:
        raise PixelError(f"pixel description incomplete: {exc}") from exc
    if bits % 8 == 0:
        size = bits // 8
        frame = value[index * size : (index + 1) * size]
        if len(frame) < size:
            raise PixelError(f"pixel data is shorter than {count} frames")
        return frame
    # BitsAllocated 1: frames are not byte-aligned; cut at bit level and repack (only the
    # bytes that hold this frame are unpacked, not the whole value)
    first, last = index * bits, (index + 1) * bits
    chunk = value[first // 8 : -(-last // 8)]
    if len(chunk) * 8 < last - first // 8 * 8:
        raise PixelError(f"pixel data is shorter than {count} frames")
    bitstream = np.unpackbits(np.frombuffer(chunk, np.uint8), bitorder="little")
    part = bitstream[first - first // 8 * 8 : last - first // 8 * 8]
    return bytes(np.packbits(part, bitorder="little").tobytes())


def _byte_order_fixed(ds: Dataset, frame: bytes, big_endian: bool) -> bytes:
    bits = int(ds.get("BitsAllocated", 8) or 8)
    if not big_endian or bits <= 8:
        return frame
    dtype = {16: ">u2", 32: ">u4", 64: ">u8"}.get(bits)
    if dtype is None:
        return frame
    return np.frombuffer(frame, dtype).astype(dtype.replace(">", "<")).tobytes()


def native_frames_le(path: Path, numbers: list[int], header: StoredHeader | None = None,
                     *, limits: PixelLimits) -> list[bytes]:
    """Frames as native pixels in Explicit VR Little Endian (decoding compressed ones)."""
    if header is not None and header.pixel is not None and header.transfer_syntax in UNCOMPRESSED:
        raw = stored_frames(path, header, numbers, limits=limits)
        big = header.transfer_syntax == ExplicitVRBigEndian
        return [_byte_order_fixed(header.dataset, f, big) for f in raw]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = read_stored(path)
    count = _frame_count(ds)
    _check_numbers(numbers, count)
    _guard(ds, limits, [n - 1 for n in numbers])
    out = []
    for n in numbers:
        try:
            arr = pixel_array(ds, index=n - 1, raw=True)
        except Exception as exc:  # decoders raise anything from RuntimeError to ValueError
            raise PixelError(f"pixel data cannot be decoded: {exc}") from exc
        little = arr.astype(arr.dtype.newbyteorder("<"), copy=False)
        out.append(little.tobytes())
    return out


def decoded_frames(path: Path, numbers: list[int], *, limits: PixelLimits
                   ) -> list[npt.NDArray[Any]]:
    """Frames ``numbers`` (1-based) decoded as pydicom gives them raw (no colour conversion):
    (rows, columns) or (rows, columns, samples), after the limits are checked."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = read_stored(path)
        count = _frame_count(ds)
        _check_numbers(numbers, count)
        _guard(ds, limits, [n - 1 for n in numbers])
        out = []
        for n in numbers:
            try:
                out.append(pixel_array(ds, index=n - 1, raw=True))
            except Exception as exc:  # decoders raise anything from RuntimeError to ValueError
                raise PixelError(f"pixel data cannot be decoded: {exc}") from exc
    return out


def check_convertible(path: Path, limits: PixelLimits) -> None:
    """Raise :class:`PixelsTooLarge` if :func:`to_explicit_le` would decode beyond ``limits``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = read_stored(path)
        ts = UID(str(ds.file_meta.get("TransferSyntaxUID", "")))
        if "PixelData" in ds and (ts.is_compressed or ts == ExplicitVRBigEndian):
            _guard(ds, limits, list(range(_frame_count(ds))))


def to_explicit_le(path: Path, *, limits: PixelLimits) -> bytes:
    """The stored instance re-encoded in Explicit VR Little Endian (uncompressed)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = read_stored(path)
        ts = UID(str(ds.file_meta.get("TransferSyntaxUID", "")))
        if "PixelData" in ds and (ts.is_compressed or ts == ExplicitVRBigEndian):
            _guard(ds, limits, list(range(_frame_count(ds))))
        try:
            if ts.is_compressed:
                ds.decompress(generate_instance_uid=False)
            elif ts == ExplicitVRBigEndian and "PixelData" in ds:
                arr = ds.pixel_array
                ds.PixelData = arr.astype(arr.dtype.newbyteorder("<")).tobytes()
            ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
            buffer = io.BytesIO()
            ds.save_as(buffer, implicit_vr=False, little_endian=True, enforce_file_format=True)
        except Exception as exc:
            raise PixelError(f"cannot convert to Explicit VR Little Endian: {exc}") from exc
    return buffer.getvalue()


# -- rendering --------------------------------------------------------------------------------


@dataclass(frozen=True)
class RenderParams:
    """PS3.18 8.3.5.1 rendered-resource parameters."""

    window: tuple[float, float, str] | None = None  # center, width, LINEAR|LINEAR_EXACT|SIGMOID
    viewport: tuple[int, int] | None = None  # vw, vh: fit into this, keeping the aspect
    region: tuple[float, float, float, float] | None = None  # sx, sy, sw, sh (source pixels)
    quality: int = 90


def parse_render_params(query: dict[str, str], thumbnail: bool = False) -> RenderParams:
    """Parse ``window``, ``viewport`` and ``quality``; ValueError with a reason if malformed."""
    window = None
    if query.get("window"):
        parts = [p.strip() for p in query["window"].split(",")]
        if len(parts) not in (2, 3):
            raise ValueError("window must be center,width[,function]")
        center, width = float(parts[0]), float(parts[1])
        function = parts[2].upper() if len(parts) == 3 else "LINEAR"
        if function not in ("LINEAR", "LINEAR_EXACT", "SIGMOID"):
            raise ValueError(f"unknown window function {parts[2]!r}")
        if not (math.isfinite(center) and math.isfinite(width)) or width <= 0:
            raise ValueError("window width must be positive")
        window = (center, width, function)
    viewport: tuple[int, int] | None = (128, 128) if thumbnail else None
    region = None
    if query.get("viewport"):
        parts = [p.strip() for p in query["viewport"].split(",")]
        if len(parts) not in (2, 6):
            raise ValueError("viewport must be vw,vh or vw,vh,sx,sy,sw,sh")
        vw, vh = int(parts[0]), int(parts[1])
        if not (0 < vw <= 8192 and 0 < vh <= 8192):
            raise ValueError("viewport size must be between 1 and 8192")
        viewport = (vw, vh)
        if len(parts) == 6:
            values = [float(p) if p else 0.0 for p in parts[2:]]
            region = (values[0], values[1], values[2], values[3])
    quality = 75 if thumbnail else 90
    if query.get("quality"):
        quality = int(query["quality"])
        if not 1 <= quality <= 100:
            raise ValueError("quality must be between 1 and 100")
    return RenderParams(window, viewport, region, quality)


def _first(value: Any) -> float | None:
    if value is None or value == "":
        return None
    if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue":
        value = value[0] if len(value) else None
        if value is None:
            return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _window(values: npt.NDArray[Any], center: float, width: float, function: str
            ) -> npt.NDArray[np.uint8]:
    """PS3.3 C.11.2.1.2 VOI functions to 0..255."""
    x = values.astype(np.float32, copy=False)
    if function == "SIGMOID":
        out = 255.0 / (1.0 + np.exp(-4.0 * (x - center) / width))
    elif function == "LINEAR_EXACT":
        out = (x - center) / width * 255.0 + 127.5
    else:
        if width <= 1:
            out = np.where(x <= center - 0.5, 0.0, 255.0)
        else:
            out = ((x - (center - 0.5)) / (width - 1) + 0.5) * 255.0
    return np.asarray(np.clip(out, 0, 255), dtype=np.uint8)


def _gray(ds: Dataset, arr: npt.NDArray[Any], params: RenderParams) -> npt.NDArray[np.uint8]:
    values = apply_modality_lut(arr, ds)
    if params.window is not None:
        center, width, function = params.window
        out = _window(values, center, width, function)
    else:
        center_v, width_v = _first(ds.get("WindowCenter")), _first(ds.get("WindowWidth"))
        if center_v is not None and width_v is not None and width_v > 0:
            function = str(ds.get("VOILUTFunction", "LINEAR") or "LINEAR").upper()
            out = _window(values, center_v, width_v, function)
        elif "VOILUTSequence" in ds:
            voi = apply_voi_lut(values, ds).astype(np.float32)
            lo, hi = float(voi.min()), float(voi.max())
            out = _window(voi, (lo + hi) / 2, max(hi - lo, 1.0), "LINEAR_EXACT")
        else:
            lo, hi = float(np.min(values)), float(np.max(values))
            out = _window(values, (lo + hi) / 2, max(hi - lo, 1.0), "LINEAR_EXACT")
    if str(ds.get("PhotometricInterpretation", "")).strip() == "MONOCHROME1":
        out = 255 - out
    return out


def _color(ds: Dataset, arr: npt.NDArray[Any]) -> npt.NDArray[np.uint8]:
    photometric = str(ds.get("PhotometricInterpretation", "")).strip()
    if photometric == "PALETTE COLOR":
        arr = apply_color_lut(arr, ds)
    if arr.dtype != np.uint8:
        bits = int(ds.get("BitsStored", 8) or 8) if photometric != "PALETTE COLOR" else 16
        arr = np.clip(arr.astype(np.float32) * (255.0 / (2**bits - 1)), 0, 255)
    return np.asarray(arr, dtype=np.uint8)


def render(path: Path, frame: int, params: RenderParams, media_type: str, *,
           limits: PixelLimits) -> bytes:
    """Frame ``frame`` (1-based) of a stored image as JPEG or PNG."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = read_stored(path)
        if not any(t in ds for t in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
            raise PixelError("the instance has no pixel data to render")
        count = _frame_count(ds)
        _check_numbers([frame], count)
        _guard(ds, limits, [frame - 1])
        try:
            arr = pixel_array(ds, index=frame - 1)
        except Exception as exc:  # decoders raise all kinds of errors
            raise PixelError(f"pixel data cannot be decoded: {exc}") from exc
        photometric = str(ds.get("PhotometricInterpretation", "")).strip()
        if arr.ndim == 2 and photometric != "PALETTE COLOR":
            image = Image.fromarray(_gray(ds, arr, params), "L")
        else:
            rgb = _color(ds, arr)
            image = Image.fromarray(rgb, "RGB" if rgb.ndim == 3 else "L")
    if params.region is not None:
        sx, sy, sw, sh = params.region
        sw = sw or image.width - sx
        sh = sh or image.height - sy
        box = (int(sx), int(sy), int(sx + abs(sw)), int(sy + abs(sh)))
        image = image.crop(box)
    if params.viewport is not None:
        vw, vh = params.viewport
        scale = min(vw / image.width, vh / image.height)
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        if size != image.size:
            image = image.resize(size, Image.Resampling.LANCZOS if scale < 1 else
                                 Image.Resampling.BILINEAR)
    out = io.BytesIO()
    if media_type == "image/png":
        image.save(out, "PNG", compress_level=1)
    else:
        image.save(out, "JPEG", quality=params.quality)
    return out.getvalue()
