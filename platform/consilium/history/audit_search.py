"""Searching the audit trail: "who opened this patient's images, when, from where".

Heads and admins see the events of their institution: what its people did, and what anyone
did with its data (a consultant of another hospital opening its studies, say). Whose data an
event is about is the institution recorded with it (``data_institution``, the owner of the
study), never a matching PatientID: two hospitals can give the same PatientID to different
people. Admins also see events nobody could be attributed to (failed logins, refused tokens).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, and_, or_, select

from consilium.audit import AuditEvent
from consilium.history import csv_export

COLUMNS = ("at", "action", "outcome", "actor", "actor_name", "actor_institution", "source",
           "channel", "patient_id", "patient_name", "study_uid", "detail")


DEFAULT_LIMIT = 500
MAX_LIMIT = 5000
MAX_OFFSET = 10_000_000  # far beyond any page a person reads; keeps the SQL integer in range


@dataclass(frozen=True)
class AuditFilter:
    institution_id: str  # whose view of the trail
    include_unattributed: bool = False  # admins: failed logins of unknown people, etc.
    patient_id: str = ""
    study_uid: str = ""
    actor: str = ""
    action: str = ""
    outcome: str = ""
    since: datetime | None = None
    until: datetime | None = None
    limit: int = DEFAULT_LIMIT
    offset: int = 0


def parse_audit_query(query: Mapping[str, str], institution_id: str,
                      include_unattributed: bool) -> AuditFilter:
    """The search of ``GET /api/audit`` from its query parameters; ValueError says what is
    wrong (a limit or offset out of range, a date that is not ISO 8601)."""

    def when(name: str) -> datetime | None:
        return datetime.fromisoformat(query[name]) if query.get(name) else None

    def bounded(name: str, default: int, low: int, high: int) -> int:
        value = int(query.get(name) or default)
        if not low <= value <= high:
            raise ValueError(f"{name} must be between {low} and {high}")
        return value

    return AuditFilter(
        institution_id=institution_id, include_unattributed=include_unattributed,
        patient_id=query.get("patient_id", ""), study_uid=query.get("study_uid", ""),
        actor=query.get("actor", ""), action=query.get("action", ""),
        outcome=query.get("outcome", ""),
        since=when("since"), until=when("until"),
        limit=bounded("limit", DEFAULT_LIMIT, 1, MAX_LIMIT),
        offset=bounded("offset", 0, 0, MAX_OFFSET),
    )


def search_audit(engine: Engine, flt: AuditFilter) -> list[dict[str, Any]]:
    table = AuditEvent.__table__  # type: ignore[attr-defined]
    if not flt.institution_id:
        return []
    scope = [
        table.c.actor_institution == flt.institution_id,
        table.c.data_institution == flt.institution_id,
    ]
    if flt.include_unattributed:
        scope.append(and_(table.c.actor_institution == "", table.c.data_institution == ""))
    stmt = select(*[table.c[c] for c in COLUMNS]).where(or_(*scope))
    if flt.patient_id:
        stmt = stmt.where(table.c.patient_id == flt.patient_id)
    if flt.study_uid:
        stmt = stmt.where(table.c.study_uid == flt.study_uid)
    if flt.actor:
        stmt = stmt.where(table.c.actor == flt.actor)
    if flt.action:
        stmt = stmt.where(table.c.action == flt.action)
    if flt.outcome:
        stmt = stmt.where(table.c.outcome == flt.outcome)
    if flt.since is not None:
        stmt = stmt.where(table.c.at >= flt.since)
    if flt.until is not None:
        stmt = stmt.where(table.c.at <= flt.until)
    stmt = stmt.order_by(table.c.at.desc(), table.c.id.desc()).limit(flt.limit).offset(flt.offset)
    with engine.connect() as conn:
        rows = conn.execute(stmt).mappings().all()
    return [
        {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in row.items()}
        for row in rows
    ]


# the export: when, who (by name), what, whose data; the identifiers a machine matches on last
CSV_COLUMNS = ("at", "actor_name", "actor_institution", "action", "outcome", "patient_name",
               "patient_id", "study_uid", "detail", "source", "channel", "actor")


def to_csv(rows: list[dict[str, Any]], zone: str = "UTC") -> str:
    return csv_export.to_csv(rows, CSV_COLUMNS, zone=zone, times=("at",),
                             names=("patient_name",))
