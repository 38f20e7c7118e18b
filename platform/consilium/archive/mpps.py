"""Modality Performed Procedure Step (PS3.4 F.7): what a scanner reports about the work it
does for a worklist item, N-CREATE when it starts (IN PROGRESS) and N-SET when it ends
(COMPLETED or DISCONTINUED, both final).

Plain functions over the engine, called by the DIMSE handlers with the calling AE title's
institution: a step is linked to the scheduled procedure of that institution with the
accession number (or the study UID) of its Scheduled Step Attributes, and moves that
procedure's status along. Errors are domain errors that the DIMSE layer answers with their
statuses: :class:`DuplicateStep` 0x0111, :class:`NoSuchStep` 0x0112, :class:`MissingAttribute`
0x0120, another :class:`~consilium.errors.InvalidInput` 0x0106, :class:`FinalStep` 0x0110.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydicom.dataset import Dataset
from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from consilium.archive.worklist_models import (
    PerformedStep,
    PerformedStepPublic,
    ProcedureStatus,
    ScheduledProcedure,
    StepStatus,
)
from consilium.errors import Conflict, InvalidInput, NotFound

MPPS_SOP_CLASS = "1.2.840.10008.3.1.2.3.3"
MAX_PERFORMED_SERIES_JSON = 16000  # what the row keeps of the performed series


class DuplicateStep(Conflict):
    """N-CREATE of a SOP Instance UID that exists (0x0111)."""


class NoSuchStep(NotFound):
    """N-SET of a step that was never created here, or another institution's (0x0112)."""


class MissingAttribute(InvalidInput):
    """A required attribute is absent (0x0120)."""


class FinalStep(Conflict):
    """N-SET of a step that is COMPLETED or DISCONTINUED already (0x0110: PS3.4 F.7.2.2.4
    "Performed Procedure Step Object may no longer be updated")."""


_STATUS_OF_STEP = {StepStatus.IN_PROGRESS: ProcedureStatus.IN_PROGRESS,
                   StepStatus.COMPLETED: ProcedureStatus.COMPLETED,
                   StepStatus.DISCONTINUED: ProcedureStatus.DISCONTINUED}


def _text(ds: Dataset, keyword: str) -> str:
    try:
        value = ds.get(keyword)
    except (ValueError, LookupError, UnicodeError) as exc:
        raise InvalidInput(f"{keyword} cannot be read: {exc}") from exc
    return "" if value is None else str(value).strip()


def _status(ds: Dataset, required: bool) -> StepStatus | None:
    text = _text(ds, "PerformedProcedureStepStatus")
    if not text:
        if required:
            raise MissingAttribute("Performed Procedure Step Status is required")
        return None
    try:
        return StepStatus(text.upper())
    except ValueError:
        raise InvalidInput(f"Performed Procedure Step Status {text!r} is not IN PROGRESS, "
                           "COMPLETED or DISCONTINUED") from None


def _performed_series(ds: Dataset) -> dict[str, list[str]]:
    series: dict[str, list[str]] = {}
    for item in ds.get("PerformedSeriesSequence") or []:
        uid = _text(item, "SeriesInstanceUID")
        if not uid:
            continue
        sops = [_text(ref, "ReferencedSOPInstanceUID")
                for ref in item.get("ReferencedImageSequence") or []]
        series.setdefault(uid, []).extend(s for s in sops if s)
    return series


def _series_json(series: dict[str, list[str]]) -> str:
    text = json.dumps(series, separators=(",", ":"))
    if len(text) > MAX_PERFORMED_SERIES_JSON:  # keep the series, drop the instance lists
        text = json.dumps({uid: [] for uid in series}, separators=(",", ":"))
    return text[:MAX_PERFORMED_SERIES_JSON]


def _reason(ds: Dataset) -> str:
    codes = ds.get("PerformedProcedureStepDiscontinuationReasonCodeSequence") or []
    if not codes:
        return ""
    return (_text(codes[0], "CodeMeaning") or _text(codes[0], "CodeValue"))[:64]


@dataclass(frozen=True)
class StepLink:
    """What the step says of the worklist item it performs."""

    accession: str
    study_uid: str


def _link(ds: Dataset) -> StepLink:
    attrs = ds.get("ScheduledStepAttributesSequence") or []
    first = attrs[0] if attrs else Dataset()
    return StepLink(_text(first, "AccessionNumber"), _text(first, "StudyInstanceUID"))


def _procedure_of(session: Session, institution_id: str, link: StepLink
                  ) -> ScheduledProcedure | None:
    if link.accession:
        row = session.exec(select(ScheduledProcedure).where(
            ScheduledProcedure.institution_id == institution_id,
            ScheduledProcedure.accession_number == link.accession)).first()
        if row is not None:
            return row
    if link.study_uid:
        row = session.exec(select(ScheduledProcedure).where(
            ScheduledProcedure.institution_id == institution_id,
            ScheduledProcedure.study_uid == link.study_uid)).first()
        if row is not None:
            return row
    return None


def _move(procedure: ScheduledProcedure | None, status: StepStatus) -> None:
    if procedure is None or procedure.status == ProcedureStatus.CANCELLED:
        return
    procedure.status = _STATUS_OF_STEP[status].value
    procedure.version += 1
    procedure.updated_at = datetime.now(UTC)


def create_step(engine: Engine, institution_id: str, station_ae: str, sop_instance_uid: str,
                ds: Dataset) -> PerformedStep:
    """N-CREATE: a step IN PROGRESS (PS3.4 F.7.2.1.1 allows no other status here)."""
    if not sop_instance_uid:
        raise MissingAttribute("the Affected SOP Instance UID is required")
    status = _status(ds, required=True)
    if status is not StepStatus.IN_PROGRESS:
        raise InvalidInput("a step is created IN PROGRESS")
    link = _link(ds)
    now = datetime.now(UTC)
    with Session(engine, expire_on_commit=False) as session:
        procedure = _procedure_of(session, institution_id, link)
        step = PerformedStep(
            sop_instance_uid=sop_instance_uid[:64], institution_id=institution_id,
            station_ae=station_ae[:16], status=status.value,
            procedure_id=procedure.id if procedure else None,
            accession_number=link.accession[:16], study_uid=link.study_uid[:64],
            patient_id=_text(ds, "PatientID")[:64], patient_name=_text(ds, "PatientName")[:324],
            modality=_text(ds, "Modality")[:16],
            description=_text(ds, "PerformedProcedureStepDescription")[:64],
            started=(_text(ds, "PerformedProcedureStepStartDate")
                     + _text(ds, "PerformedProcedureStepStartTime"))[:32],
            performed_series=_series_json(_performed_series(ds)), created_at=now,
            updated_at=now)
        _move(procedure, status)
        session.add(step)
        if procedure is not None:
            session.add(procedure)
        try:
            session.commit()
        except IntegrityError as exc:
            raise DuplicateStep(f"performed procedure step {sop_instance_uid} exists") from exc
        session.refresh(step)
    return step


def set_step(engine: Engine, institution_id: str, sop_instance_uid: str, ds: Dataset
             ) -> PerformedStep:
    """N-SET: more of the step (performed series, end) and, at most once, its final status."""
    with Session(engine, expire_on_commit=False) as session:
        step = session.exec(select(PerformedStep).where(
            PerformedStep.sop_instance_uid == sop_instance_uid)).first()
        if step is None or step.institution_id != institution_id:
            raise NoSuchStep(f"no performed procedure step {sop_instance_uid}")
        if step.status != StepStatus.IN_PROGRESS:
            raise FinalStep(f"the step is {step.status} and may no longer be updated")
        status = _status(ds, required=False)
        series = _performed_series(ds)
        if series:
            step.performed_series = _series_json(series)
        end = (_text(ds, "PerformedProcedureStepEndDate")
               + _text(ds, "PerformedProcedureStepEndTime"))
        if end:
            step.ended = end[:32]
        if status is not None and status is not StepStatus.IN_PROGRESS:
            step.status = status.value
            if status is StepStatus.DISCONTINUED:
                step.discontinuation_reason = _reason(ds)
            procedure = (session.get(ScheduledProcedure, step.procedure_id)
                         if step.procedure_id is not None else None)
            _move(procedure, status)
            if procedure is not None:
                session.add(procedure)
        step.updated_at = datetime.now(UTC)
        session.add(step)
        session.commit()
        session.refresh(step)
    return step


def steps_of(engine: Engine, institution_id: str, procedure_id: int) -> list[PerformedStep]:
    with Session(engine, expire_on_commit=False) as session:
        return list(session.exec(select(PerformedStep).where(
            PerformedStep.institution_id == institution_id,
            PerformedStep.procedure_id == procedure_id)).all())


def step_public(step: PerformedStep) -> PerformedStepPublic:
    series: dict[str, Any] = json.loads(step.performed_series) if step.performed_series else {}
    return PerformedStepPublic(
        sop_instance_uid=step.sop_instance_uid, station_ae=step.station_ae,
        status=StepStatus(step.status), procedure_id=step.procedure_id,
        accession_number=step.accession_number, study_uid=step.study_uid, started=step.started,
        ended=step.ended, discontinuation_reason=step.discontinuation_reason,
        series={str(k): [str(s) for s in v] for k, v in series.items()})
