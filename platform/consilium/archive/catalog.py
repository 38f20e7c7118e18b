"""Study lists for the web pages (the DICOMweb QIDO-RS routes are the full search)."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from sqlalchemy import Engine, or_, select

from consilium.archive.models import patients, studies


def visible_studies(
    engine: Engine,
    institutions: Collection[str],
    granted_study_uids: Collection[str] = (),
    limit: int = 200,
) -> list[dict[str, Any]]:
    """Newest studies first among those of ``institutions`` and the granted ones."""
    conditions = []
    if institutions:
        conditions.append(studies.c.institution_id.in_(list(institutions)))
    if granted_study_uids:
        conditions.append(studies.c.study_uid.in_(list(granted_study_uids)))
    if not conditions:
        return []
    stmt = (
        select(
            studies.c.study_uid, studies.c.study_date, studies.c.description,
            studies.c.modalities, studies.c.num_series, studies.c.num_instances,
            studies.c.accession_number, studies.c.institution_id,
            patients.c.patient_id, patients.c.patient_name,
        )
        .join(patients, patients.c.id == studies.c.patient_pk)
        .where(or_(*conditions))
        .order_by(studies.c.study_date.desc(), studies.c.id.desc())
        .limit(limit)
    )
    with engine.connect() as conn:
        return [dict(row) for row in conn.execute(stmt).mappings().all()]


def institution_of_study(engine: Engine, study_uid: str) -> str | None:
    """The institution that owns a study, for the audit trail (whose data an event is about)."""
    with engine.connect() as conn:
        row = conn.execute(
            select(studies.c.institution_id).where(studies.c.study_uid == study_uid)).first()
    return str(row[0]) if row else None


def patient_of_study(engine: Engine, study_uid: str) -> tuple[str, str] | None:
    """(patient ID, patient name) of a study, for the audit trail."""
    stmt = (
        select(patients.c.patient_id, patients.c.patient_name)
        .join(studies, studies.c.patient_pk == patients.c.id)
        .where(studies.c.study_uid == study_uid)
    )
    with engine.connect() as conn:
        row = conn.execute(stmt).first()
    return (row[0], row[1]) if row else None
