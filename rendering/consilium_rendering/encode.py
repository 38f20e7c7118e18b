"""Frames to bytes (JPEG, PNG, WebP with Pillow) and MPR values to display grey levels.

JPEG at quality 85 is the streaming default: about 1 ms for a 512x512 frame here and a few tens
of kilobytes. PNG is lossless (for references and screenshots; compression level 1, which is
several times faster than Pillow's default and barely larger on rendered frames). WebP is there
for clients that prefer it.
"""

from __future__ import annotations

import enum
import io
import math

import numpy as np
import numpy.typing as npt
from PIL import Image

from consilium_rendering.errors import EncodeError

__all__ = ["ImageFormat", "apply_window", "encode_frame"]


class ImageFormat(enum.Enum):
    JPEG = "jpeg"
    PNG = "png"
    WEBP = "webp"

    @property
    def media_type(self) -> str:
        return f"image/{self.value}"


def encode_frame(
    pixels: npt.NDArray[np.uint8], fmt: ImageFormat = ImageFormat.JPEG, quality: int = 85
) -> bytes:
    """Encode an RGB (h, w, 3) or grey (h, w) uint8 frame."""
    if pixels.dtype != np.uint8 or pixels.ndim not in (2, 3) or (
        pixels.ndim == 3 and pixels.shape[2] != 3
    ):
        raise EncodeError(
            f"a frame must be uint8 (h, w) or (h, w, 3), got {pixels.dtype} {pixels.shape}"
        )
    if not 1 <= quality <= 100:
        raise EncodeError(f"quality must be 1 to 100, got {quality}")
    image = Image.fromarray(np.ascontiguousarray(pixels))
    out = io.BytesIO()
    if fmt is ImageFormat.JPEG:
        image.save(out, format="JPEG", quality=quality)
    elif fmt is ImageFormat.PNG:
        image.save(out, format="PNG", compress_level=1)
    elif fmt is ImageFormat.WEBP:
        image.save(out, format="WEBP", quality=quality, method=0)
    else:  # pragma: no cover - the enum is closed
        raise EncodeError(f"unknown image format {fmt!r}")
    return out.getvalue()


def apply_window(
    values: npt.NDArray[np.floating] | npt.NDArray[np.integer], center: float, width: float
) -> npt.NDArray[np.uint8]:
    """Grey levels 0-255 of ``values`` under a window (DICOM PS3.3 C.11.2.1.2.1, linear)."""
    if not (math.isfinite(center) and math.isfinite(width)) or width < 1:
        raise EncodeError(f"window width must be at least 1, got center {center}, width {width}")
    low = center - 0.5 - (width - 1) / 2.0
    scale = 255.0 / max(width - 1.0, 1e-3)  # width 1 is a threshold at the centre
    scaled = (np.asarray(values, dtype=np.float32) - np.float32(low)) * np.float32(scale)
    grey: npt.NDArray[np.uint8] = np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
    return grey
