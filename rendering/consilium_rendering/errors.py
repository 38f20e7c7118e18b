"""Every failure of the library is one of these, each with a plain message for the user.

::

    RenderingError                 base: catch this to catch everything the library raises
     +-- SeriesError               the input series cannot become a volume (``reason`` says why)
     +-- PlaneError                an MPR plane or slab that makes no sense (zero axis, no pixels)
     +-- RenderError               a volume-rendering request that cannot be honoured
     +-- EncodeError               an unknown frame format or a frame of the wrong shape
     +-- IsosurfaceError           no surface at that level, or a surface too large to return

The service maps them once: ``SeriesError`` and ``PlaneError`` are the client's input (422),
``RenderError`` for an unknown preset or a bad camera too; anything else escaping the library
is a bug. Messages name the offending instance (SOP Instance UID) or value where there is one.
"""

from __future__ import annotations

import enum

__all__ = [
    "EncodeError",
    "IsosurfaceError",
    "PlaneError",
    "RenderError",
    "RenderingError",
    "SeriesError",
    "SeriesProblem",
]


class RenderingError(Exception):
    """Base of every error the library raises on purpose."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class SeriesProblem(enum.Enum):
    """Why a series was refused; the value is a stable code for APIs and logs."""

    EMPTY = "empty"
    """No datasets were given."""
    UNREADABLE = "unreadable"
    """A file could not be parsed as DICOM."""
    NOT_IMAGE = "not-image"
    """No pixel data (SR, RT plan, waveform...) or a non-image object (segmentation)."""
    UNSUPPORTED_PIXELS = "unsupported-pixels"
    """Colour or multi-sample pixels, or pixel data that cannot be decoded here."""
    UNSUPPORTED_MULTIFRAME = "unsupported-multiframe"
    """A multi-frame object without per-frame plane positions."""
    NO_GEOMETRY = "no-geometry"
    """Image Position/Orientation (Patient) or Pixel Spacing missing or malformed."""
    SINGLE_SLICE = "single-slice"
    """One slice cannot make a volume."""
    MIXED_SERIES = "mixed-series"
    """Instances of several series or frames of reference."""
    MIXED_ORIENTATION = "mixed-orientation"
    """Slices with different orientations (a localizer in the series, say)."""
    MIXED_SIZE = "mixed-size"
    """Slices with different rows/columns or pixel spacing."""
    DUPLICATE_POSITIONS = "duplicate-positions"
    """Two slices at the same position: several phases or acquisitions in one series."""
    NOT_COLLINEAR = "not-collinear"
    """Slice positions do not lie on one line."""
    LARGE_GAP = "large-gap"
    """Slices missing over a stretch too long to interpolate honestly."""
    EXCESSIVE_TILT = "excessive-tilt"
    """Slice direction too far from the slice normal to be a gantry tilt."""
    TOO_LARGE = "too-large"
    """More voxels than the caller allows."""


class SeriesError(RenderingError):
    """The series cannot be reconstructed into a volume."""

    def __init__(self, reason: SeriesProblem, message: str, *, instance_uid: str = "") -> None:
        super().__init__(message)
        self.reason = reason
        self.instance_uid = instance_uid

    def __str__(self) -> str:
        return f"[{self.reason.value}] {self.message}"


class PlaneError(RenderingError):
    """An MPR plane, slab or point mapping that cannot be computed."""


class RenderError(RenderingError):
    """A volume-rendering request that cannot be honoured (unknown preset, bad camera...)."""


class EncodeError(RenderingError):
    """A frame that cannot be encoded as asked."""


class IsosurfaceError(RenderingError):
    """No isosurface at that level, or one larger than allowed."""
