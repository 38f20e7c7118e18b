"""Consult cases (a cross-enterprise remote read, after IHE XRR-WD): the request, its studies,
its history, messages, attachments and signed conclusions."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import BigInteger, Column, Text, UniqueConstraint
from sqlmodel import Field, SQLModel


class CaseStatus(StrEnum):
    DRAFT = "draft"
    SUBMITTED = "submitted"
    ACCEPTED = "accepted"
    RETURNED = "returned"  # returned to the requester for more information
    DECLINED = "declined"
    CONCLUDED = "concluded"
    AMENDED = "amended"
    CLOSED = "closed"
    CANCELLED = "cancelled"


OPEN_STATUSES = frozenset({CaseStatus.SUBMITTED, CaseStatus.ACCEPTED, CaseStatus.RETURNED})
FINAL_STATUSES = frozenset({CaseStatus.DECLINED, CaseStatus.CLOSED, CaseStatus.CANCELLED})


class Priority(StrEnum):
    ROUTINE = "routine"
    URGENT = "urgent"
    EMERGENCY = "emergency"

    @property
    def rank(self) -> int:
        return {"emergency": 0, "urgent": 1, "routine": 2}[self.value]


class EventKind(StrEnum):
    CREATED = "created"
    EDITED = "edited"
    SUBMITTED = "submitted"
    ACCEPTED = "accepted"
    DECLINED = "declined"
    RETURNED = "returned"
    RESUBMITTED = "resubmitted"
    REASSIGNED = "reassigned"
    MESSAGE = "message"
    ATTACHMENT = "attachment"
    CONCLUDED = "concluded"
    AMENDED = "amended"
    CLOSED = "closed"
    CANCELLED = "cancelled"
    CONSILIUM = "consilium"  # a live session of the case (detail: what happened in it)


class ConsultCase(SQLModel, table=True):
    __tablename__ = "consult_case"

    id: int | None = Field(default=None, primary_key=True)
    status: str = Field(max_length=16, index=True)
    priority: str = Field(max_length=16, index=True)
    question: str = Field(sa_column=Column(Text, nullable=False))
    clinical_info: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    patient_id: str = Field(default="", max_length=64, index=True)
    patient_name: str = Field(default="", max_length=324)
    requester_subject: str = Field(max_length=256, index=True)
    requester_name: str = Field(default="", max_length=256)
    requester_institution: str = Field(max_length=64, index=True)
    target_institution: str = Field(max_length=64, index=True)
    target_specialty: str = Field(default="", max_length=128, index=True)
    target_subject: str = Field(default="", max_length=256, description="a named specialist")
    assignee_subject: str = Field(default="", max_length=256, index=True)
    assignee_name: str = Field(default="", max_length=256)
    created_at: datetime
    submitted_at: datetime | None = None
    accepted_at: datetime | None = None
    concluded_at: datetime | None = None
    closed_at: datetime | None = None
    due_at: datetime | None = Field(default=None, index=True)
    version: int = Field(default=1, description="optimistic lock: every change increments it")


class CaseStudy(SQLModel, table=True):
    __tablename__ = "consult_case_study"
    __table_args__ = (UniqueConstraint("case_id", "study_uid"),)

    id: int | None = Field(default=None, primary_key=True)
    case_id: int = Field(foreign_key="consult_case.id", index=True)
    study_uid: str = Field(max_length=64, index=True)
    institution_id: str = Field(max_length=64)
    key_images: str = Field(default="", max_length=4000, description="backslash-joined UIDs")


class CaseEvent(SQLModel, table=True):
    """The case's history: every transition, message and conclusion, with who and when."""

    __tablename__ = "consult_case_event"

    id: int | None = Field(default=None, primary_key=True)
    case_id: int = Field(foreign_key="consult_case.id", index=True)
    at: datetime = Field(index=True)
    kind: str = Field(max_length=16)
    actor: str = Field(max_length=256)
    actor_name: str = Field(default="", max_length=256)
    actor_institution: str = Field(default="", max_length=64)
    from_status: str = Field(default="", max_length=16)
    to_status: str = Field(default="", max_length=16)
    detail: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))


class CaseMessage(SQLModel, table=True):
    __tablename__ = "consult_message"

    id: int | None = Field(default=None, primary_key=True)
    case_id: int = Field(foreign_key="consult_case.id", index=True)
    at: datetime
    author: str = Field(max_length=256)
    author_name: str = Field(default="", max_length=256)
    author_institution: str = Field(default="", max_length=64)
    text: str = Field(sa_column=Column(Text, nullable=False))


class Conclusion(SQLModel, table=True):
    """A signed opinion. Never changed once signed: an amendment is a new version."""

    __tablename__ = "consult_conclusion"
    __table_args__ = (UniqueConstraint("case_id", "version"),)

    id: int | None = Field(default=None, primary_key=True)
    case_id: int = Field(foreign_key="consult_case.id", index=True)
    version: int
    findings: str = Field(sa_column=Column(Text, nullable=False))
    impression: str = Field(sa_column=Column(Text, nullable=False))
    recommendations: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    author: str = Field(max_length=256)
    author_name: str = Field(default="", max_length=256)
    author_institution: str = Field(default="", max_length=64)
    signed_at: datetime
    replaces_version: int | None = None
    amendment_reason: str = Field(default="", max_length=1000)
    content_sha256: str = Field(max_length=64)
    pdf_sha256: str = Field(default="", max_length=64,
                            description="the rendered PDF, kept under <data_dir>/attachments")


class CaseAttachment(SQLModel, table=True):
    """A file a party added to the case; its bytes are kept by content under the data dir."""

    __tablename__ = "consult_attachment"

    id: int | None = Field(default=None, primary_key=True)
    case_id: int = Field(foreign_key="consult_case.id", index=True)
    filename: str = Field(max_length=255)
    media_type: str = Field(max_length=64)
    size: int = Field(sa_column=Column(BigInteger, nullable=False))
    sha256: str = Field(max_length=64)
    uploaded_by: str = Field(max_length=256)
    uploaded_by_name: str = Field(default="", max_length=256)
    uploaded_by_institution: str = Field(default="", max_length=64)
    at: datetime


class ArchivedDocument(SQLModel, table=True):
    """A signed conclusion written into the archive beside one of its studies (an Encapsulated
    PDF or a Basic Text SR), or the failure to write it, kept so that it can be retried."""

    __tablename__ = "consult_archived_document"
    __table_args__ = (UniqueConstraint("conclusion_id", "study_uid", "kind"),)

    id: int | None = Field(default=None, primary_key=True)
    case_id: int = Field(foreign_key="consult_case.id", index=True)
    conclusion_id: int = Field(foreign_key="consult_conclusion.id", index=True)
    study_uid: str = Field(max_length=64)
    kind: str = Field(max_length=8, description="pdf | sr")
    series_uid: str = Field(default="", max_length=64)
    sop_instance_uid: str = Field(default="", max_length=64)
    sop_class_uid: str = Field(default="", max_length=64)
    status: str = Field(max_length=16, index=True, description="stored | failed")
    reason: str = Field(default="", max_length=1000)
    at: datetime


class ConclusionDraft(SQLModel, table=True):
    """The next conclusion (or amendment) being written; see :mod:`consilium.consult.drafts`."""

    __tablename__ = "consult_conclusion_draft"

    id: int | None = Field(default=None, primary_key=True)
    case_id: int = Field(foreign_key="consult_case.id", unique=True)
    findings: str = Field(sa_column=Column(Text, nullable=False))
    impression: str = Field(sa_column=Column(Text, nullable=False))
    recommendations: str = Field(sa_column=Column(Text, nullable=False))
    author: str = Field(max_length=256)
    author_name: str = Field(default="", max_length=256)
    updated_at: datetime
    version: int = Field(default=1, description="optimistic lock: every save increments it")
