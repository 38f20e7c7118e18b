"""Consult cases (a cross-enterprise remote read, after IHE XRR-WD): the request, its studies,
its history, messages, attachments and signed conclusions.

Tables (``table=True``) share their fields with the shapes of the JSON API through a base
class (``CaseBase`` -> ``ConsultCase`` and ``CasePublic``), as in the FastAPI template: a
request body is a ``...Create``/``...Update`` shape, validated once at the edge
(:func:`consilium.http_api.read_model`), and only ``...Public`` shapes leave the server. The
OpenAPI document is generated from them (:mod:`consilium.openapi`)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Self

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, model_validator
from sqlalchemy import BigInteger, Column, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from consilium.archive.marks import KeyImage


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


class CaseBase(SQLModel):
    """What a consult case is, as stored and as shown."""

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


class ConsultCase(CaseBase, table=True):
    __tablename__ = "consult_case"


class CaseStudy(SQLModel, table=True):
    __tablename__ = "consult_case_study"
    __table_args__ = (UniqueConstraint("case_id", "study_uid"),)

    id: int | None = Field(default=None, primary_key=True)
    case_id: int = Field(foreign_key="consult_case.id", index=True)
    study_uid: str = Field(max_length=64, index=True)
    institution_id: str = Field(max_length=64)


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


class MessageBase(SQLModel):
    """What a message of a case's thread is, as stored and as shown."""

    id: int | None = Field(default=None, primary_key=True)
    case_id: int = Field(foreign_key="consult_case.id", index=True)
    at: datetime
    author: str = Field(max_length=256)
    author_name: str = Field(default="", max_length=256)
    author_institution: str = Field(default="", max_length=64)
    text: str = Field(sa_column=Column(Text, nullable=False))


class CaseMessage(MessageBase, table=True):
    __tablename__ = "consult_message"



class ConclusionBase(SQLModel):
    """What a signed conclusion is, as stored and as shown."""

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


class Conclusion(ConclusionBase, table=True):
    """A signed opinion. Never changed once signed: an amendment is a new version."""

    __tablename__ = "consult_conclusion"
    __table_args__ = (UniqueConstraint("case_id", "version"),)



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


class DraftBase(SQLModel):
    """What a conclusion being written is, as stored and as shown."""

    id: int | None = Field(default=None, primary_key=True)
    case_id: int = Field(foreign_key="consult_case.id", unique=True)
    findings: str = Field(sa_column=Column(Text, nullable=False))
    impression: str = Field(sa_column=Column(Text, nullable=False))
    recommendations: str = Field(sa_column=Column(Text, nullable=False))
    author: str = Field(max_length=256)
    author_name: str = Field(default="", max_length=256)
    updated_at: datetime
    version: int = Field(default=1, description="optimistic lock: every save increments it")


class ConclusionDraft(DraftBase, table=True):
    """The next conclusion (or amendment) being written; see :mod:`consilium.consult.drafts`."""

    __tablename__ = "consult_conclusion_draft"


# -- the API's shapes ----------------------------------------------------------------------------


def _not_blank(text: str) -> str:
    if not text.strip():
        raise ValueError("must not be blank")
    return text


Text1 = Annotated[str, Field(min_length=1), AfterValidator(_not_blank)]  # some text required
KeyImages = dict[str, list[str]]  # study UID -> SOP Instance UIDs of its key images


def _unique_key_images(key_images: KeyImages | None) -> KeyImages | None:
    return None if key_images is None else {
        study: list(dict.fromkeys(sops)) for study, sops in key_images.items()}


def _none_is_no_images(value: object) -> object:
    return {} if value is None else value  # given as null (absent stays None: unchanged)


class Body(BaseModel):
    """A request body: unknown fields are ignored (a client may send more than an action
    needs), known ones must have their type (strict: ``"1"`` is no integer)."""

    model_config = ConfigDict(extra="ignore")


class CaseCreate(Body):
    """``POST /api/cases``: a draft request."""

    question: Text1
    study_uids: list[str] = Field(min_length=1)
    target_institution: Text1
    priority: Priority = Priority.ROUTINE
    target_specialty: str = ""
    target_subject: str = Field(default="", description="a named specialist's subject")
    clinical_info: str = ""
    key_images: Annotated[KeyImages, AfterValidator(_unique_key_images)] = Field(
        default_factory=dict, description="study UID -> SOP Instance UIDs of its key images")

    @model_validator(mode="after")
    def _key_images_of_linked_studies(self) -> Self:
        stray = set(self.key_images) - set(self.study_uids)
        if stray:
            raise ValueError(f"key images of a study the case does not link: {sorted(stray)[0]}")
        return self


class CaseUpdate(Body):
    """``PATCH /api/cases/{id}``: what changes in a draft (the text also in a returned case);
    an absent field stays as it is. ``version`` is the case version the change was made on."""

    version: int
    question: str | None = None
    clinical_info: str | None = None
    priority: Priority | None = None
    target_institution: str | None = None
    target_specialty: str | None = None
    target_subject: str | None = None
    study_uids: list[str] | None = None
    key_images: Annotated[KeyImages | None, BeforeValidator(_none_is_no_images),
                          AfterValidator(_unique_key_images)] = Field(
        default=None, description="study UID -> SOP Instance UIDs; null removes them all")

    @model_validator(mode="after")
    def _key_images_of_linked_studies(self) -> Self:
        if self.study_uids is not None and self.key_images is not None:
            stray = set(self.key_images) - set(self.study_uids)
            if stray:
                raise ValueError("key images of a study the case does not link: "
                                 f"{sorted(stray)[0]}")
        return self


class Transition(Body):
    """``POST /api/cases/{id}/{submit|accept|close|cancel}``; ``version``: the case version
    the caller decided on (a stale one answers 409), or none."""

    version: int | None = None


class Resubmission(Transition):
    answer: str = Field(default="", description="the information that was asked for")


class Decline(Transition):
    reason: Text1


class ReturnForInformation(Transition):
    request: Text1 = Field(description="what information is missing")


class Reassignment(Transition):
    subject: str = Field(default="", description="a named colleague, or none")
    specialty: str | None = Field(default=None, description="another specialty, or unchanged")


class ConclusionCreate(Transition):
    """``conclude``: the signed opinion (it cannot change afterwards)."""

    findings: str = ""
    impression: Text1
    recommendations: str = ""


class ConclusionAmend(ConclusionCreate):
    """``amend``: a new signed version that names the one it replaces."""

    reason: Text1


class MessageCreate(Body):
    text: Text1


class DraftUpdate(Body):
    """``PUT /api/cases/{id}/conclusion-draft``; ``version``: the draft version it started
    from (null for the first save)."""

    version: int | None = None
    findings: str = ""
    impression: str = ""
    recommendations: str = ""


class CasePublic(CaseBase):
    id: int
    allowed_actions: list[str] = Field(
        default_factory=list, description="what the caller may do with the case now")


class CaseStudyPublic(BaseModel):
    study_uid: str
    institution: str
    key_images: list[str] = Field(description="SOP Instance UIDs of the study's key images "
                                  "(the case's key_images say more of each)")


class MessagePublic(MessageBase):
    id: int


class ArchivedPublic(BaseModel):
    """A DICOM object a conclusion was written into the archive as."""

    study_uid: str
    series_uid: str
    sop_instance_uid: str
    sop_class_uid: str
    kind: str = Field(description="pdf | sr")


class ArchiveFailure(BaseModel):
    study_uid: str
    kind: str
    reason: str


class ConclusionPublic(ConclusionBase):
    id: int
    pdf_url: str
    archived: list[ArchivedPublic]
    archive_failures: list[ArchiveFailure]


class AttachmentPublic(BaseModel):
    id: int
    case_id: int
    filename: str
    media_type: str
    size: int
    sha256: str
    uploaded_by: str
    uploaded_by_name: str
    at: datetime


class CaseDetail(BaseModel):
    """``GET /api/cases/{id}``."""

    case: CasePublic
    studies: list[CaseStudyPublic]
    messages: list[MessagePublic]
    conclusions: list[ConclusionPublic]
    attachments: list[AttachmentPublic]
    key_images: list[KeyImage] = Field(
        default_factory=list, description="with series, instance number, frame and caption; "
        "GET /api/cases/{id}/key-images")


class CaseList(BaseModel):
    """``GET /api/cases``: the target side's open cases and the caller's own requests."""

    inbox: list[CasePublic]
    requests: list[CasePublic]


class TimelineEntryPublic(BaseModel):
    at: datetime
    kind: str
    actor: str
    actor_name: str
    actor_institution: str
    from_status: str = ""
    to_status: str = ""
    detail: str = ""
    study_uid: str = ""
    channel: str = ""


class DraftPublic(DraftBase):
    id: int


class DraftAnswer(BaseModel):
    draft: DraftPublic | None
