"""The consilium's protocol: its tables and what leaves the server of them.

A session has at most one protocol (:class:`Protocol`): the decision written together, one
editor at a time (the chair hands over the pen), every save a :class:`ProtocolVersion`; then
signed by each participant who agrees (:class:`ProtocolSignature`: identity, institution, time;
a dissent is a signature that disagrees, with its text); the chair closes it. The closed
protocol becomes a PDF attached to the case and is written into the archive beside each study
of the case (:class:`ProtocolArchived`, kept to retry what failed). The rules:
:mod:`consilium.live.protocol`; the protocol on the wire: ``docs/live-consilium.md``.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel
from sqlalchemy import Column, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from consilium.live.models import SessionPublic


class ProtocolStatus(StrEnum):
    DRAFT = "draft"  # being written: the editor saves versions
    SIGNING = "signing"  # the text of one version is put to the participants
    CLOSED = "closed"  # the chair closed it: signed, a PDF in the case and the archive


class Protocol(SQLModel, table=True):
    __tablename__ = "consilium_protocol"

    id: int | None = Field(default=None, primary_key=True)
    session_id: str = Field(foreign_key="consilium_session.id", max_length=32, unique=True)
    case_id: int = Field(foreign_key="consult_case.id", index=True)
    status: str = Field(max_length=16)
    editor_subject: str = Field(max_length=256, description="who holds the pen")
    editor_name: str = Field(default="", max_length=256)
    version: int = Field(default=0, description="the newest saved version (0: none yet)")
    text: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    created_at: datetime
    closed_at: datetime | None = None
    closed_by: str = Field(default="", max_length=256)
    content_sha256: str = Field(default="", max_length=64,
                                description="of the closed version's text and signatures")
    pdf_sha256: str = Field(default="", max_length=64)
    attachment_id: int | None = Field(default=None, foreign_key="consult_attachment.id")


class ProtocolVersion(SQLModel, table=True):
    """One save of the text (who, when, what)."""

    __tablename__ = "consilium_protocol_version"
    __table_args__ = (UniqueConstraint("protocol_id", "version"),)

    id: int | None = Field(default=None, primary_key=True)
    protocol_id: int = Field(foreign_key="consilium_protocol.id", index=True)
    version: int
    text: str = Field(sa_column=Column(Text, nullable=False))
    author: str = Field(max_length=256)
    author_name: str = Field(default="", max_length=256)
    author_institution: str = Field(default="", max_length=64)
    at: datetime


class ProtocolSignature(SQLModel, table=True):
    """A participant's signature of a version: agreeing, or dissenting with a text. A newer
    signature of the same participant, or a reopened protocol, voids it (kept, for the record)."""

    __tablename__ = "consilium_protocol_signature"

    id: int | None = Field(default=None, primary_key=True)
    protocol_id: int = Field(foreign_key="consilium_protocol.id", index=True)
    version: int
    subject: str = Field(max_length=256)
    name: str = Field(default="", max_length=256)
    institution: str = Field(default="", max_length=64)
    agree: bool
    dissent: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    at: datetime
    voided_at: datetime | None = None


class ProtocolArchived(SQLModel, table=True):
    """The closed protocol written into the archive beside one study of the case (an
    Encapsulated PDF or a Basic Text SR), or the failure to write it, kept to retry."""

    __tablename__ = "consilium_protocol_archived"
    __table_args__ = (UniqueConstraint("protocol_id", "study_uid", "kind"),)

    id: int | None = Field(default=None, primary_key=True)
    protocol_id: int = Field(foreign_key="consilium_protocol.id", index=True)
    study_uid: str = Field(max_length=64)
    kind: str = Field(max_length=8, description="pdf | sr")
    series_uid: str = Field(default="", max_length=64)
    sop_instance_uid: str = Field(default="", max_length=64)
    sop_class_uid: str = Field(default="", max_length=64)
    status: str = Field(max_length=16, index=True, description="stored | failed")
    reason: str = Field(default="", max_length=1000)
    at: datetime


# -- what the HTTP API answers --------------------------------------------------------------------


class VersionPublic(BaseModel):
    version: int
    author: str
    author_name: str
    author_institution: str
    at: datetime


class VersionText(VersionPublic):
    """``GET /api/consilia/{id}/protocol/versions``: each save with its text."""

    text: str


class SignaturePublic(BaseModel):
    subject: str
    name: str
    institution: str
    version: int
    agree: bool
    dissent: str
    at: datetime


class ArchivedProtocolPublic(BaseModel):
    study_uid: str
    kind: str
    series_uid: str
    sop_instance_uid: str
    sop_class_uid: str
    status: str
    reason: str


class ProtocolPublic(BaseModel):
    """``GET /api/consilia/{id}/protocol`` (versions without their texts but the newest)."""

    session_id: str
    case_id: int
    status: ProtocolStatus
    editor: str
    editor_name: str
    version: int
    text: str
    versions: list[VersionPublic]
    signatures: list[SignaturePublic]
    closed_at: datetime | None
    closed_by: str
    content_sha256: str
    pdf_url: str | None
    attachment_id: int | None
    archived: list[ArchivedProtocolPublic]


class VersionTexts(BaseModel):
    versions: list[VersionText]


class TimelineStep(BaseModel):
    """One step of a session's replay (:func:`consilium.live.replay.timeline`)."""

    seq: int
    until: int
    at: str
    actor: str
    name: str
    kind: str
    what: dict[str, Any]


class ReplayPublic(BaseModel):
    """``GET /api/consilia/{id}/replay``."""

    session: SessionPublic
    last_seq: int
    timeline: list[TimelineStep]
    truncated: bool


class ReplayState(BaseModel):
    """``GET /api/consilia/{id}/replay/state?seq=n``: the session's state after change n."""

    seq: int
    state: dict[str, Any]
