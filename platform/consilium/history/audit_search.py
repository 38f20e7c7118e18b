"""Searching the audit trail: "who opened this patient's images, when, from where".

Heads and admins see the events of their institution: what its people did, and what anyone
did with its patients' studies (a consultant of another hospital opening them, say). Admins
also see events nobody could be attributed to (failed logins, refused tokens).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, or_, select

from consilium.archive.catalog import institution_patient_ids, institution_study_uids
from consilium.audit import AuditEvent

COLUMNS = ("at", "action", "outcome", "actor", "actor_name", "actor_institution", "source",
           "channel", "patient_id", "patient_name", "study_uid", "detail")


@dataclass(frozen=True)
class AuditFilter:
    institution_id: str  # whose view of the trail
    include_unattributed: bool = False  # admins: failed logins of unknown people, etc.
    patient_id: str = ""
    study_uid: str = ""
    actor: str = ""
    action: str = ""
    since: datetime | None = None
    until: datetime | None = None
    limit: int = 500
    offset: int = 0


def search_audit(engine: Engine, flt: AuditFilter) -> list[dict[str, Any]]:
    table = AuditEvent.__table__  # type: ignore[attr-defined]
    own_studies = institution_study_uids(flt.institution_id)
    own_patients = institution_patient_ids(flt.institution_id)
    scope = [
        table.c.actor_institution == flt.institution_id,
        table.c.study_uid.in_(own_studies),
        table.c.patient_id.in_(own_patients),
    ]
    if flt.include_unattributed:
        scope.append(table.c.actor_institution == "")
    stmt = select(*[table.c[c] for c in COLUMNS]).where(or_(*scope))
    if flt.patient_id:
        stmt = stmt.where(table.c.patient_id == flt.patient_id)
    if flt.study_uid:
        stmt = stmt.where(table.c.study_uid == flt.study_uid)
    if flt.actor:
        stmt = stmt.where(table.c.actor == flt.actor)
    if flt.action:
        stmt = stmt.where(table.c.action == flt.action)
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


def to_csv(rows: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(COLUMNS))
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()
