"""Tables and public shapes of the Modality Worklist: scheduled procedures (what a registrar
books and a scanner asks for) and performed procedure steps (what the scanner reports by MPPS).

One scheduled procedure is one requested procedure with one scheduled step: what the
scanners of the region actually use (PS3.4 K.6: a worklist item). Dates and times are DICOM DA
and TM strings (YYYYMMDD, HHMMSS), which compare as text, like the archive's index. Names are
stored decoded, with a case-folded ``*_search`` column for wildcard matching (as the index).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict
from pydantic import Field as PField
from sqlalchemy import UniqueConstraint
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(UTC)


class ProcedureStatus(StrEnum):
    """Where a scheduled procedure is; MPPS moves it, a registrar may cancel it."""

    SCHEDULED = "scheduled"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    DISCONTINUED = "discontinued"
    CANCELLED = "cancelled"


OPEN_STATUSES = (ProcedureStatus.SCHEDULED, ProcedureStatus.IN_PROGRESS)  # on the worklist


class MatchState(StrEnum):
    """How the images that arrived relate to the item (computed from the archive's index)."""

    WAITING = "waiting"  # nothing arrived with its accession number or study UID
    MATCHED = "matched"  # a study with its study UID, accession number and patient ID
    MISMATCH = "mismatch"  # something arrived that contradicts it: for the registrar


class StepStatus(StrEnum):
    """PS3.3 C.4.14 Performed Procedure Step Status."""

    IN_PROGRESS = "IN PROGRESS"
    COMPLETED = "COMPLETED"
    DISCONTINUED = "DISCONTINUED"


class ScheduledProcedure(SQLModel, table=True):
    __tablename__ = "scheduled_procedure"
    __table_args__ = (UniqueConstraint("institution_id", "accession_number"),)

    id: int | None = Field(default=None, primary_key=True)
    institution_id: str = Field(max_length=64, index=True)
    accession_number: str = Field(max_length=16)
    study_uid: str = Field(max_length=64, unique=True, description="assigned at booking")
    patient_id: str = Field(max_length=64, index=True)
    patient_name: str = Field(default="", max_length=324)
    patient_name_search: str = Field(default="", max_length=324)
    patient_birth_date: str = Field(default="", max_length=8)
    patient_sex: str = Field(default="", max_length=16)
    requested_procedure_id: str = Field(default="", max_length=16)
    requested_procedure_description: str = Field(default="", max_length=64)
    referring_physician: str = Field(default="", max_length=324)
    modality: str = Field(max_length=16, index=True)
    scheduled_station_ae: str = Field(default="", max_length=16, index=True)
    scheduled_station_name: str = Field(default="", max_length=16)
    scheduled_date: str = Field(max_length=8, index=True)
    scheduled_time: str = Field(default="", max_length=16)
    step_id: str = Field(default="", max_length=16)
    step_description: str = Field(default="", max_length=64)
    performing_physician: str = Field(default="", max_length=324)
    status: str = Field(default=ProcedureStatus.SCHEDULED.value, max_length=16, index=True)
    created_by: str = Field(default="", max_length=256)
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    version: int = 1


class PerformedStep(SQLModel, table=True):
    """An MPPS instance as the modality created and updated it."""

    __tablename__ = "performed_step"

    id: int | None = Field(default=None, primary_key=True)
    sop_instance_uid: str = Field(max_length=64, unique=True)
    institution_id: str = Field(max_length=64, index=True)
    station_ae: str = Field(max_length=16)
    status: str = Field(max_length=16)
    procedure_id: int | None = Field(default=None, foreign_key="scheduled_procedure.id",
                                     index=True)
    accession_number: str = Field(default="", max_length=16)
    study_uid: str = Field(default="", max_length=64, index=True)
    patient_id: str = Field(default="", max_length=64)
    patient_name: str = Field(default="", max_length=324)
    modality: str = Field(default="", max_length=16)
    description: str = Field(default="", max_length=64)
    started: str = Field(default="", max_length=32, description="DA + TM")
    ended: str = Field(default="", max_length=32)
    discontinuation_reason: str = Field(default="", max_length=64)
    performed_series: str = Field(default="", max_length=16000,
                                  description="JSON: series UID -> SOP Instance UIDs")
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


# -- request and answer shapes -----------------------------------------------------------------

_DA = re.compile(r"^\d{8}$")
_TM = re.compile(r"^\d{2}(\d{2}(\d{2})?)?$")
_CS = re.compile(r"^[A-Z0-9_ ]{1,16}$")
_SH_BAD = re.compile(r"[\\\x00-\x1f]")


def _date(value: str) -> str:
    text = value.strip().replace("-", "")
    if not _DA.match(text):
        raise ValueError("a date YYYYMMDD (or YYYY-MM-DD)")
    datetime.strptime(text, "%Y%m%d")  # a real day
    return text


def _time(value: str) -> str:
    text = value.strip().replace(":", "")
    if text and not _TM.match(text):
        raise ValueError("a time HHMM or HHMMSS (or HH:MM)")
    return text


def _optional_date(value: str) -> str:
    return _date(value) if value.strip() else ""


def _modality(value: str) -> str:
    text = value.strip().upper()
    if not _CS.match(text):
        raise ValueError("a modality code such as CT, MR, US")
    return text


def _short(limit: int) -> AfterValidator:
    def check(value: str) -> str:
        text = value.strip()
        if len(text) > limit:
            raise ValueError(f"at most {limit} characters")
        if _SH_BAD.search(text):
            raise ValueError("no backslash or control characters")
        return text
    return AfterValidator(check)


def _ae(value: str) -> str:
    text = value.strip()
    if len(text) > 16 or _SH_BAD.search(text):
        raise ValueError("an AE title: at most 16 characters, no backslash")
    return text


Sex = Annotated[str, AfterValidator(lambda v: _sex(v))]


def _sex(value: str) -> str:
    text = value.strip().upper()
    if text not in ("", "M", "F", "O"):
        raise ValueError("M, F, O or empty")
    return text


class ProcedureFields(BaseModel):
    """What a registrar fills in; DICOM's lengths are checked here (an item that a scanner
    could not take is refused when it is booked, not when it is asked for)."""

    model_config = ConfigDict(extra="ignore")

    patient_id: Annotated[str, _short(64)]
    patient_name: Annotated[str, _short(64 * 3)] = PField(
        description="DICOM PN: Family^Given^Middle; any script")
    patient_birth_date: Annotated[str, AfterValidator(_optional_date)] = ""
    patient_sex: Sex = ""
    accession_number: Annotated[str, _short(16)] = PField(
        default="", description="empty: one is assigned")
    requested_procedure_id: Annotated[str, _short(16)] = ""
    requested_procedure_description: Annotated[str, _short(64)] = ""
    referring_physician: Annotated[str, _short(64 * 3)] = ""
    modality: Annotated[str, AfterValidator(_modality)]
    scheduled_station_ae: Annotated[str, AfterValidator(_ae)] = ""
    scheduled_station_name: Annotated[str, _short(16)] = ""
    scheduled_date: Annotated[str, AfterValidator(_date)]
    scheduled_time: Annotated[str, AfterValidator(_time)] = ""
    step_description: Annotated[str, _short(64)] = ""
    performing_physician: Annotated[str, _short(64 * 3)] = ""


class ProcedureCreate(ProcedureFields):
    """``POST /api/scheduled-procedures``."""


class ProcedureUpdate(BaseModel):
    """``PATCH /api/scheduled-procedures/{id}``: the fields that change, and the ``version``
    the change was made on (409 when someone else changed the item meanwhile)."""

    model_config = ConfigDict(extra="ignore")

    version: int
    patient_id: Annotated[str, _short(64)] | None = None
    patient_name: Annotated[str, _short(64 * 3)] | None = None
    patient_birth_date: Annotated[str, AfterValidator(_optional_date)] | None = None
    patient_sex: Sex | None = None
    requested_procedure_id: Annotated[str, _short(16)] | None = None
    requested_procedure_description: Annotated[str, _short(64)] | None = None
    referring_physician: Annotated[str, _short(64 * 3)] | None = None
    modality: Annotated[str, AfterValidator(_modality)] | None = None
    scheduled_station_ae: Annotated[str, AfterValidator(_ae)] | None = None
    scheduled_station_name: Annotated[str, _short(16)] | None = None
    scheduled_date: Annotated[str, AfterValidator(_date)] | None = None
    scheduled_time: Annotated[str, AfterValidator(_time)] | None = None
    step_description: Annotated[str, _short(64)] | None = None
    performing_physician: Annotated[str, _short(64 * 3)] | None = None
    status: ProcedureStatus | None = PField(
        default=None, description="only 'cancelled' (or back to 'scheduled') by hand; the "
        "rest comes from the modality's MPPS")


class ProcedurePublic(BaseModel):
    """A scheduled procedure with what arrived for it."""

    id: int
    institution_id: str
    accession_number: str
    study_uid: str
    patient_id: str
    patient_name: str
    patient_birth_date: str
    patient_sex: str
    requested_procedure_id: str
    requested_procedure_description: str
    referring_physician: str
    modality: str
    scheduled_station_ae: str
    scheduled_station_name: str
    scheduled_date: str
    scheduled_time: str
    step_id: str
    step_description: str
    performing_physician: str
    status: ProcedureStatus
    version: int
    match: MatchState = MatchState.WAITING
    match_detail: str = PField(default="", description="what contradicts the booking")
    performed_status: str = PField(default="", description="the last MPPS status, if any")


class PerformedStepPublic(BaseModel):
    """An MPPS instance as reported by the modality."""

    sop_instance_uid: str
    station_ae: str
    status: StepStatus
    procedure_id: int | None
    accession_number: str
    study_uid: str
    started: str
    ended: str
    discontinuation_reason: str
    series: dict[str, list[str]]
