"""Marks on images: measurements, graphic annotations and key images, as plain values.

One shape for every place marks come from or go to: the case's own annotations (drawn in the
viewer, shared live in a consilium), the DICOM objects written when a conclusion or protocol is
signed (Key Object Selection, TID 1500 measurement report, Grayscale Softcopy Presentation State)
and the same kinds of objects that arrive in the archive from elsewhere. Coordinates are those of
DICOM: ``image`` marks are (column, row) pixel positions of one frame of one instance, with the
top-left corner of the top-left pixel at (0, 0) as in SCOORD; ``world`` marks (drawn in MPR panes)
are patient coordinates in millimetres within a frame of reference, as in SCOORD3D.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

UID = str


class MarkKind(StrEnum):
    LENGTH = "length"
    ANGLE = "angle"
    ELLIPSE = "ellipse"
    RECTANGLE = "rectangle"
    ARROW = "arrow"
    FREEHAND = "freehand"


class MarkSource(StrEnum):
    """Where a mark came from: drawn in Consilium, or read from an archived DICOM object."""

    CASE = "case"
    SR = "sr"
    GSPS = "gsps"
    KOS = "kos"


class ImageRef(BaseModel):
    """One frame of one stored instance (frame is 1-based, None for single-frame images)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    study_uid: UID = Field(max_length=64)
    series_uid: UID = Field(max_length=64)
    sop_instance_uid: UID = Field(max_length=64)
    sop_class_uid: UID | None = Field(default=None, max_length=64)
    frame: int | None = Field(default=None, ge=1)


class Measured(BaseModel):
    """What a mark measures, in the units of DICOM's code values (mm, deg, mm2, [hnsf'U])."""

    model_config = ConfigDict(extra="forbid")

    length_mm: float | None = None
    angle_deg: float | None = None
    area_mm2: float | None = None
    mean: float | None = None
    stdev: float | None = None
    min: float | None = None
    max: float | None = None
    unit: str | None = Field(default=None, max_length=16,
                             description="unit of mean..max: HU or the modality's")


class Mark(BaseModel):
    """One measurement or graphic annotation.

    ``image`` is set for marks on an image (``points`` are (column, row));
    ``frame_of_reference_uid`` and ``points3d`` for marks in world coordinates (MPR panes); a mark
    may have both when the world mark was also projected onto a source image.
    """

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=64,
                    description="stable id, chosen by the author's client")
    kind: MarkKind
    image: ImageRef | None = None
    points: list[tuple[float, float]] = Field(default_factory=list, max_length=2000)
    frame_of_reference_uid: UID | None = Field(default=None, max_length=64)
    series_uid: UID | None = Field(default=None, max_length=64,
                                   description="the series whose volume a world mark was drawn "
                                   "on (MPR panes); None for image marks (see image)")
    points3d: list[tuple[float, float, float]] = Field(default_factory=list, max_length=2000)
    text: str = Field(default="", max_length=1024)
    measured: Measured = Field(default_factory=Measured)
    author_subject: str = Field(default="", max_length=255)
    author_name: str = Field(default="", max_length=255)
    author_institution: str = Field(default="", max_length=64)
    color: str = Field(default="", max_length=16, description="#rrggbb of the author")
    source: MarkSource = MarkSource.CASE
    source_sop_instance_uid: UID | None = Field(default=None, max_length=64,
                                                description="the SR/GSPS it was read from")


class KeyImage(BaseModel):
    """A key image of a case or of an archived Key Object Selection document."""

    model_config = ConfigDict(extra="forbid")

    image: ImageRef
    caption: str = Field(default="", max_length=1024)
    series_description: str = Field(default="", max_length=64)
    instance_number: int | None = None
    author_subject: str = Field(default="", max_length=255)
    author_name: str = Field(default="", max_length=255)
    source: MarkSource = MarkSource.CASE
    source_sop_instance_uid: UID | None = Field(default=None, max_length=64)
