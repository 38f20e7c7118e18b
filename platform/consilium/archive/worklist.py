"""The Modality Worklist: scheduled procedures booked by a registrar (web page, API), answered
to the scanners of the same institution (MWL C-FIND), moved along by their MPPS
(:mod:`consilium.archive.mpps`), and checked against what arrived in the archive.

Plain functions over the engine; the HTTP routes (:mod:`consilium.archive.regional_routes`)
and the DIMSE handlers are thin adapters over them. Who may book is the policy's
(:func:`consilium.identity.policy.may_schedule`); a scanner sees its own institution's items
only (the calling AE title's institution).

Matching arrivals: an item is *matched* when the archive holds a study of its institution with
its Study Instance UID, its accession number and its patient ID; it is a *mismatch* (flagged
for the registrar, with what contradicts it) when a study arrived with its accession number
but another study UID or patient, or with its study UID but another accession number or
patient. Computed when the list is read, so it is never stale whatever path the images took
(C-STORE, STOW-RS, import).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from sqlalchemy import Engine, or_
from sqlalchemy import select as core_select
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from consilium.archive.models import patients, studies
from consilium.archive.worklist_models import (
    OPEN_STATUSES,
    MatchState,
    PerformedStep,
    ProcedureCreate,
    ProcedurePublic,
    ProcedureStatus,
    ProcedureUpdate,
    ScheduledProcedure,
)
from consilium.errors import Conflict, InvalidInput, NotFound

MWL_MAX_ANSWERS = 1000  # a worklist query matching more is cut there (scanners page by date)
MANUAL_STATUSES = (ProcedureStatus.SCHEDULED, ProcedureStatus.CANCELLED)


def fold(text: str) -> str:
    """What names are matched on: case-folded (works for Cyrillic, unlike SQL LIKE)."""
    return text.casefold()


def wildcard(pattern: str) -> re.Pattern[str]:
    """A DICOM wildcard (``*`` any run, ``?`` one character) as a case-folded regex."""
    parts = [".*" if c == "*" else "." if c == "?" else re.escape(c) for c in fold(pattern)]
    return re.compile("".join(parts) + r"\Z", re.DOTALL)


def new_accession() -> str:
    """A fresh accession number (SH, 16 characters): the day and a random part."""
    return datetime.now(UTC).strftime("%y%m%d") + secrets.token_hex(4).upper()


# -- booking -----------------------------------------------------------------------------------


def create_procedure(engine: Engine, institution_id: str, fields: ProcedureCreate,
                     created_by: str) -> ScheduledProcedure:
    """Book a procedure for ``institution_id``; its Study Instance UID is assigned here (the
    scanner takes it from the worklist, which is what lets arrivals be matched).
    :class:`Conflict` when the accession number is taken in the institution."""
    values = fields.model_dump()
    values["accession_number"] = values["accession_number"] or new_accession()
    values["requested_procedure_id"] = (values["requested_procedure_id"]
                                        or values["accession_number"])
    row = ScheduledProcedure(
        **values, institution_id=institution_id, study_uid=generate_uid(prefix=None),
        patient_name_search=fold(fields.patient_name), step_id=values["accession_number"],
        created_by=created_by[:256])
    with Session(engine, expire_on_commit=False) as session:
        session.add(row)
        try:
            session.commit()
        except IntegrityError as exc:
            raise Conflict(f"accession number {row.accession_number} is already booked "
                           "in this institution") from exc
        session.refresh(row)
    return row


def update_procedure(engine: Engine, institution_id: str, procedure_id: int,
                     changes: ProcedureUpdate) -> ScheduledProcedure:
    """Edit an item of ``institution_id`` (another's is :class:`NotFound`, like a missing one);
    :class:`Conflict` when it changed since ``changes.version`` or is no longer editable."""
    with Session(engine, expire_on_commit=False) as session:
        row = session.get(ScheduledProcedure, procedure_id)
        if row is None or row.institution_id != institution_id:
            raise NotFound("no such scheduled procedure")
        if row.version != changes.version:
            raise Conflict("the item was changed meanwhile; reload it")
        status = changes.status
        if status is not None and status not in MANUAL_STATUSES:
            raise InvalidInput("a status other than cancelled or scheduled comes from the "
                               "modality (MPPS)")
        if row.status not in (ProcedureStatus.SCHEDULED, ProcedureStatus.CANCELLED):
            raise Conflict(f"the procedure is {row.status}; it can no longer be edited")
        for name, value in changes.model_dump(exclude_unset=True,
                                              exclude={"version"}).items():
            if value is not None:
                setattr(row, name, value)
        row.patient_name_search = fold(row.patient_name)
        row.version += 1
        row.updated_at = datetime.now(UTC)
        session.add(row)
        session.commit()
        session.refresh(row)
    return row


def procedures(engine: Engine, institution_id: str, *, date_from: str = "", date_to: str = "",
               status: str = "", limit: int = 500) -> list[ScheduledProcedure]:
    """The institution's items, by scheduled date and time."""
    stmt = select(ScheduledProcedure).where(ScheduledProcedure.institution_id
                                            == institution_id)
    if date_from:
        stmt = stmt.where(col(ScheduledProcedure.scheduled_date) >= date_from)
    if date_to:
        stmt = stmt.where(col(ScheduledProcedure.scheduled_date) <= date_to)
    if status:
        stmt = stmt.where(ScheduledProcedure.status == status)
    stmt = stmt.order_by(col(ScheduledProcedure.scheduled_date),
                         col(ScheduledProcedure.scheduled_time),
                         col(ScheduledProcedure.id)).limit(limit)
    with Session(engine, expire_on_commit=False) as session:
        return list(session.exec(stmt).all())


def procedure(engine: Engine, institution_id: str, procedure_id: int) -> ScheduledProcedure:
    with Session(engine, expire_on_commit=False) as session:
        row = session.get(ScheduledProcedure, procedure_id)
    if row is None or row.institution_id != institution_id:
        raise NotFound("no such scheduled procedure")
    return row


# -- what arrived --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Arrival:
    """A study of the index, as matching sees it."""

    study_uid: str
    accession: str
    patient_id: str


def _arrivals(engine: Engine, institution_id: str, items: Sequence[ScheduledProcedure]
              ) -> list[Arrival]:
    uids = [i.study_uid for i in items]
    accessions = [i.accession_number for i in items]
    if not items:
        return []
    stmt = (core_select(studies.c.study_uid, studies.c.accession_number, patients.c.patient_id)
            .join(patients, patients.c.id == studies.c.patient_pk)
            .where(studies.c.institution_id == institution_id,
                   or_(studies.c.study_uid.in_(uids),
                       studies.c.accession_number.in_(accessions))))
    with engine.connect() as conn:
        return [Arrival(str(a), str(b or ""), str(c or "")) for a, b, c in conn.execute(stmt)]


def match_of(item: ScheduledProcedure, arrivals: Iterable[Arrival]) -> tuple[MatchState, str]:
    """The item's match state and, for a mismatch, what contradicts it."""
    problems: list[str] = []
    matched = False
    for study in arrivals:
        same_uid = study.study_uid == item.study_uid
        same_accession = study.accession == item.accession_number
        if not (same_uid or same_accession):
            continue
        same_patient = study.patient_id == item.patient_id
        if same_uid and same_accession and same_patient:
            matched = True
            continue
        if same_accession and not same_uid:
            problems.append(f"study {study.study_uid} arrived with this accession number")
        if same_uid and not same_accession:
            problems.append(f"the study arrived with accession number "
                            f"{study.accession or '(none)'}")
        if not same_patient:
            problems.append(f"study {study.study_uid} arrived for patient ID "
                            f"{study.patient_id or '(none)'}, booked {item.patient_id}")
    if problems:
        return MatchState.MISMATCH, "; ".join(problems)
    return (MatchState.MATCHED if matched else MatchState.WAITING), ""


def _last_steps(engine: Engine, ids: Sequence[int]) -> dict[int, str]:
    if not ids:
        return {}
    stmt = (select(PerformedStep.procedure_id, PerformedStep.status)
            .where(col(PerformedStep.procedure_id).in_(ids))
            .order_by(col(PerformedStep.updated_at)))
    with Session(engine) as session:
        return {int(pid): str(status) for pid, status in session.exec(stmt) if pid is not None}


def public(engine: Engine, items: Sequence[ScheduledProcedure]) -> list[ProcedurePublic]:
    """The items as answered, each with its match state and last MPPS status."""
    by_institution: dict[str, list[ScheduledProcedure]] = {}
    for item in items:
        by_institution.setdefault(item.institution_id, []).append(item)
    arrivals: dict[str, list[Arrival]] = {
        inst: _arrivals(engine, inst, rows) for inst, rows in by_institution.items()}
    steps = _last_steps(engine, [i.id for i in items if i.id is not None])
    answers = []
    for item in items:
        state, detail = match_of(item, arrivals[item.institution_id])
        answers.append(ProcedurePublic.model_validate({
            **item.model_dump(), "match": state, "match_detail": detail,
            "performed_status": steps.get(item.id or 0, "")}))
    return answers


def mismatches(engine: Engine, institution_id: str) -> list[ProcedurePublic]:
    """The registrar's flags: items whose arrivals contradict them."""
    return [p for p in public(engine, procedures(engine, institution_id, limit=5000))
            if p.match is MatchState.MISMATCH]


# -- the worklist as scanners ask for it (MWL C-FIND) ----------------------------------------


@dataclass(frozen=True)
class WorklistQuery:
    """The matching keys of an MWL C-FIND identifier that this SCP honours."""

    patient_name: str = ""
    patient_id: str = ""
    accession: str = ""
    study_uid: str = ""
    modality: str = ""
    station_ae: str = ""
    date_from: str = ""
    date_to: str = ""
    time_from: str = ""
    time_to: str = ""


def _value(ds: Dataset, keyword: str) -> str:
    value = ds.get(keyword)
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("ascii", "replace").strip()
    return str(value).strip()


def _split_range(text: str) -> tuple[str, str]:
    if "-" in text:
        low, high = text.split("-", 1)
        return low.strip(), high.strip()
    return text, text


def parse_worklist_query(identifier: Dataset) -> WorklistQuery:
    """The keys of an MWL identifier (PS3.4 K.6.1.2); :class:`InvalidInput` when the Scheduled
    Procedure Step Sequence holds more than one item or a key is unreadable."""
    try:
        step = Dataset()
        sequence = identifier.get("ScheduledProcedureStepSequence")
        if sequence:
            if len(sequence) != 1:
                raise InvalidInput("the Scheduled Procedure Step Sequence must have one item")
            step = sequence[0]
        dates = _value(step, "ScheduledProcedureStepStartDate")
        times = _value(step, "ScheduledProcedureStepStartTime")
        date_from, date_to = _split_range(dates) if dates else ("", "")
        time_from, time_to = _split_range(times) if times else ("", "")
        name = _value(identifier, "PatientName")
        return WorklistQuery(
            patient_name="" if name.strip("*") == "" else name,
            patient_id=_value(identifier, "PatientID").strip("*") and _value(
                identifier, "PatientID"),
            accession=_value(identifier, "AccessionNumber"),
            study_uid=_value(identifier, "StudyInstanceUID"),
            modality=_value(step, "Modality").upper(),
            station_ae=_value(step, "ScheduledStationAETitle"),
            date_from=date_from, date_to=date_to, time_from=time_from, time_to=time_to)
    except (ValueError, LookupError, UnicodeError, TypeError) as exc:
        raise InvalidInput(f"unreadable worklist query: {exc}") from exc


def _text_matches(pattern: str, value: str) -> bool:
    if not pattern or pattern == "*":
        return True
    if "*" in pattern or "?" in pattern:
        return bool(wildcard(pattern).match(fold(value)))
    return pattern == value


def _time_in(item_time: str, low: str, high: str) -> bool:
    value = (item_time or "000000").ljust(6, "0")[:6]
    return (not low or value >= low.ljust(6, "0")[:6]) and (
        not high or value <= high.ljust(6, "9")[:6])


def worklist_items(engine: Engine, institution_id: str, query: WorklistQuery,
                   limit: int = MWL_MAX_ANSWERS) -> list[ScheduledProcedure]:
    """Open items (scheduled, in progress) of the institution that match ``query``."""
    stmt = select(ScheduledProcedure).where(
        ScheduledProcedure.institution_id == institution_id,
        col(ScheduledProcedure.status).in_([s.value for s in OPEN_STATUSES]))
    if query.date_from:
        stmt = stmt.where(col(ScheduledProcedure.scheduled_date) >= query.date_from)
    if query.date_to:
        stmt = stmt.where(col(ScheduledProcedure.scheduled_date) <= query.date_to)
    if query.modality:
        stmt = stmt.where(ScheduledProcedure.modality == query.modality)
    if query.station_ae and not set("*?") & set(query.station_ae):
        stmt = stmt.where(ScheduledProcedure.scheduled_station_ae
                          == query.station_ae)
    if query.accession and not set("*?") & set(query.accession):
        stmt = stmt.where(ScheduledProcedure.accession_number
                          == query.accession)
    if query.study_uid:
        stmt = stmt.where(col(ScheduledProcedure.study_uid).in_(query.study_uid.split("\\")))
    stmt = stmt.order_by(col(ScheduledProcedure.scheduled_date),
                         col(ScheduledProcedure.scheduled_time), col(ScheduledProcedure.id))
    found = []
    with Session(engine, expire_on_commit=False) as session:
        for item in session.exec(stmt):
            if not (_text_matches(query.patient_name, item.patient_name)
                    and _text_matches(query.patient_id, item.patient_id)
                    and _text_matches(query.accession, item.accession_number)
                    and _text_matches(query.station_ae, item.scheduled_station_ae)
                    and _time_in(item.scheduled_time, query.time_from, query.time_to)):
                continue
            found.append(item)
            if len(found) >= limit:
                break
    return found


def worklist_answer(item: ScheduledProcedure, identifier: Dataset) -> Dataset:
    """The C-FIND answer for ``item``: every key the identifier asked for (top level and in the
    step sequence), filled where the item knows it, in UTF-8 (ISO_IR 192)."""
    known: dict[str, Any] = {
        "PatientName": item.patient_name, "PatientID": item.patient_id,
        "PatientBirthDate": item.patient_birth_date, "PatientSex": item.patient_sex,
        "AccessionNumber": item.accession_number, "StudyInstanceUID": item.study_uid,
        "RequestedProcedureID": item.requested_procedure_id,
        "RequestedProcedureDescription": item.requested_procedure_description,
        "ReferringPhysicianName": item.referring_physician,
    }
    step_known: dict[str, Any] = {
        "Modality": item.modality, "ScheduledStationAETitle": item.scheduled_station_ae,
        "ScheduledStationName": item.scheduled_station_name,
        "ScheduledProcedureStepStartDate": item.scheduled_date,
        "ScheduledProcedureStepStartTime": item.scheduled_time,
        "ScheduledProcedureStepID": item.step_id,
        "ScheduledProcedureStepDescription": item.step_description,
        "ScheduledPerformingPhysicianName": item.performing_physician,
        "ScheduledProcedureStepStatus": "STARTED" if item.status == "in_progress"
        else "SCHEDULED",
    }
    answer = Dataset()
    answer.SpecificCharacterSet = "ISO_IR 192"
    for element in identifier:
        keyword = element.keyword
        if keyword in ("SpecificCharacterSet", "ScheduledProcedureStepSequence", ""):
            continue
        value = known.get(keyword, "")
        answer.add_new(element.tag, element.VR, value if element.VR != "SQ" else [])
    step = Dataset()
    asked = identifier.get("ScheduledProcedureStepSequence")
    asked_step = asked[0] if asked else Dataset()
    for element in asked_step:
        if element.keyword and element.VR != "SQ":
            step.add_new(element.tag, element.VR, step_known.get(element.keyword, ""))
        elif element.VR == "SQ":
            step.add_new(element.tag, "SQ", [])
    for keyword in ("Modality", "ScheduledStationAETitle", "ScheduledProcedureStepStartDate",
                    "ScheduledProcedureStepStartTime", "ScheduledProcedureStepID"):
        if keyword not in step:
            setattr(step, keyword, step_known[keyword])
    answer.ScheduledProcedureStepSequence = [step]
    for keyword in ("AccessionNumber", "StudyInstanceUID", "PatientID", "PatientName"):
        if keyword not in answer:
            setattr(answer, keyword, known[keyword])
    return answer


def find_worklist(engine: Engine, institution_id: str, identifier: Dataset,
                  limit: int = MWL_MAX_ANSWERS) -> list[Dataset]:
    """The MWL C-FIND of a scanner of ``institution_id``: its answers, in date order."""
    query = parse_worklist_query(identifier)
    return [worklist_answer(item, identifier)
            for item in worklist_items(engine, institution_id, query, limit)]
