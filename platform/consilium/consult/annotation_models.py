"""The tables of a case's annotations and key images, and the shapes of their API.

A mark is kept as its :class:`consilium.archive.marks.Mark` JSON with the few columns that are
queried or decide who may change it (author, deleted, where it was last written from). Deleting
leaves a tombstone (``deleted``), so a late ``put`` of the same id from a slow client cannot
bring back a mark silently without its author, and the live record and the table agree.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import BigInteger, Column, Text, UniqueConstraint
from sqlmodel import Field as SqlField
from sqlmodel import SQLModel

from consilium.archive.marks import KeyImage, Mark


class CaseMark(SQLModel, table=True):
    """One measurement or graphic annotation of a case (its id chosen by the author's client)."""

    __tablename__ = "case_mark"
    __table_args__ = (UniqueConstraint("case_id", "mark_id"),)

    id: int | None = SqlField(default=None, primary_key=True)
    case_id: int = SqlField(foreign_key="consult_case.id", index=True)
    mark_id: str = SqlField(max_length=64)
    kind: str = SqlField(max_length=16)
    study_uid: str = SqlField(default="", max_length=64)
    series_uid: str = SqlField(default="", max_length=64)
    body: str = SqlField(sa_column=Column(Text, nullable=False), description="the Mark (JSON)")
    author_subject: str = SqlField(max_length=256)
    author_name: str = SqlField(default="", max_length=256)
    author_institution: str = SqlField(default="", max_length=64)
    version: int = SqlField(default=1, description="every write increments it")
    deleted: bool = SqlField(default=False)
    created_at: datetime
    updated_at: datetime
    session_id: str | None = SqlField(default=None, max_length=32,
                                      description="the consilium session of the last write")
    seq: int | None = SqlField(default=None, sa_column=Column(BigInteger, nullable=True),
                               description="that write's seq in the session")


class CaseKeyImage(SQLModel, table=True):
    """A key image of a case: one frame of one instance (frame 0: a single-frame image)."""

    __tablename__ = "case_key_image"
    __table_args__ = (UniqueConstraint("case_id", "sop_instance_uid", "frame"),)

    id: int | None = SqlField(default=None, primary_key=True)
    case_id: int = SqlField(foreign_key="consult_case.id", index=True)
    study_uid: str = SqlField(max_length=64)
    series_uid: str = SqlField(max_length=64)
    sop_instance_uid: str = SqlField(max_length=64)
    sop_class_uid: str = SqlField(default="", max_length=64)
    frame: int = SqlField(default=0)
    instance_number: int | None = None
    series_description: str = SqlField(default="", max_length=64)
    caption: str = SqlField(default="", sa_column=Column(Text, nullable=False, default=""))
    author_subject: str = SqlField(default="", max_length=256)
    author_name: str = SqlField(default="", max_length=256)
    created_at: datetime


# -- the API's shapes ----------------------------------------------------------------------------


class MarkList(BaseModel):
    """``GET /api/cases/{id}/marks``: the case's marks, oldest first."""

    marks: list[Mark]


class KeyImageList(BaseModel):
    """``GET /api/cases/{id}/key-images``: in the order they were marked."""

    key_images: list[KeyImage]


class KeyImageCreate(BaseModel):
    """``PUT /api/cases/{id}/key-images``: mark an image (again: the caption changes)."""

    model_config = ConfigDict(extra="forbid")

    study_uid: str = Field(min_length=1, max_length=64)
    series_uid: str = Field(min_length=1, max_length=64)
    sop_instance_uid: str = Field(min_length=1, max_length=64)
    frame: int | None = Field(default=None, ge=1, le=100_000)
    caption: str = Field(default="", max_length=1024)


class KeyImageDelete(BaseModel):
    """``DELETE /api/cases/{id}/key-images``: which one (query parameters)."""

    model_config = ConfigDict(extra="forbid")

    sop_instance_uid: str = Field(min_length=1, max_length=64)
    frame: int | None = Field(default=None, ge=1, le=100_000)
