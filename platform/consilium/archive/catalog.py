"""The archive's read face: what other domains may know of the index and the stored files.

No module outside :mod:`consilium.archive` imports the archive's tables or opens a stored file;
they ask here. These functions apply no policy: they serve the gate
(:mod:`consilium.archive.access`), which does, and system work that needs no reader (writing a
signed conclusion into its study, the health check, scoping the audit search to an
institution's own data).
"""

from __future__ import annotations

import warnings
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydicom import dcmread
from pydicom.dataset import Dataset
from sqlalchemy import Engine, func, or_, select

from consilium.archive.models import instances, patients, series_table, studies

if TYPE_CHECKING:
    from consilium.archive.ingest import ArchiveStore


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


def patient_of_study(engine: Engine, study_uid: str, institution_id: str
                     ) -> tuple[str, str] | None:
    """(patient ID, patient name) of a study of ``institution_id``; None for another
    institution's study or an unknown one (the audit trail names patients with this)."""
    stmt = (
        select(patients.c.patient_id, patients.c.patient_name)
        .join(studies, studies.c.patient_pk == patients.c.id)
        .where(studies.c.study_uid == study_uid, studies.c.institution_id == institution_id)
    )
    with engine.connect() as conn:
        row = conn.execute(stmt).first()
    return (str(row[0]), str(row[1])) if row else None


@dataclass(frozen=True)
class StudyRow:
    """A study as the gate checks it: its owner and its patient."""

    study_uid: str
    institution_id: str
    patient_id: str
    patient_name: str


def studies_by_uid(engine: Engine, study_uids: Sequence[str]) -> dict[str, StudyRow]:
    """The studies among ``study_uids`` that exist."""
    uids = list(dict.fromkeys(study_uids))
    if not uids:
        return {}
    stmt = (
        select(studies.c.study_uid, studies.c.institution_id, patients.c.patient_id,
               patients.c.patient_name)
        .join(patients, patients.c.id == studies.c.patient_pk)
        .where(studies.c.study_uid.in_(uids))
    )
    with engine.connect() as conn:
        return {str(r[0]): StudyRow(*(str(v or "") for v in r)) for r in conn.execute(stmt)}


def sop_uids_in_study(engine: Engine, study_uid: str, sop_uids: Sequence[str]) -> set[str]:
    """Those of ``sop_uids`` that are instances of the study."""
    if not sop_uids:
        return set()
    stmt = (
        select(instances.c.sop_uid)
        .join(series_table, series_table.c.id == instances.c.series_pk)
        .join(studies, studies.c.id == series_table.c.study_pk)
        .where(studies.c.study_uid == study_uid, instances.c.sop_uid.in_(list(sop_uids)))
    )
    with engine.connect() as conn:
        return {str(uid) for uid in conn.execute(stmt).scalars()}


@dataclass(frozen=True)
class InstanceFacts:
    """Where an instance is and what a list of key images says of it."""

    study_uid: str
    series_uid: str
    sop_uid: str
    sop_class_uid: str
    instance_number: int | None
    series_description: str
    series_number: int | None
    frames: int


def instance_facts(engine: Engine, sop_uids: Sequence[str]) -> dict[str, InstanceFacts]:
    """The stored instances among ``sop_uids`` with their series and study (no policy: the
    callers checked the study through the gate, or validate what a case already links)."""
    if not sop_uids:
        return {}
    stmt = (
        select(studies.c.study_uid, series_table.c.series_uid, instances.c.sop_uid,
               instances.c.sop_class_uid, instances.c.instance_number,
               series_table.c.description, series_table.c.series_number,
               instances.c.number_of_frames)
        .join(series_table, series_table.c.id == instances.c.series_pk)
        .join(studies, studies.c.id == series_table.c.study_pk)
        .where(instances.c.sop_uid.in_(list(sop_uids)))
    )
    with engine.connect() as conn:
        return {str(r[2]): InstanceFacts(str(r[0]), str(r[1]), str(r[2]), str(r[3] or ""),
                                         None if r[4] is None else int(r[4]), str(r[5] or ""),
                                         None if r[6] is None else int(r[6]), int(r[7] or 1))
                for r in conn.execute(stmt)}


@dataclass(frozen=True)
class SeriesRow:
    """One stored instance of a series, in instance order."""

    study_uid: str
    institution_id: str
    path: str  # relative to the storage folder
    sha256: str


def series_instances(engine: Engine, series_uid: str) -> list[SeriesRow]:
    """The stored instances of a series with its study and owner; empty if unknown."""
    stmt = (
        select(studies.c.study_uid, studies.c.institution_id, instances.c.path,
               instances.c.sha256)
        .select_from(series_table)
        .join(studies, studies.c.id == series_table.c.study_pk)
        .join(instances, instances.c.series_pk == series_table.c.id)
        .where(series_table.c.series_uid == series_uid)
        .order_by(instances.c.instance_number, instances.c.id)
    )
    with engine.connect() as conn:
        return [SeriesRow(str(a), str(b), str(c), str(d)) for a, b, c, d in conn.execute(stmt)]


@dataclass(frozen=True)
class SeriesSummary:
    study_uid: str
    series_uid: str
    modality: str
    instances: int


def series_of_studies(engine: Engine, study_uids: Sequence[str]) -> list[SeriesSummary]:
    """The series of the studies (system work: what a live session prepares to render)."""
    if not study_uids:
        return []
    stmt = (select(studies.c.study_uid, series_table.c.series_uid, series_table.c.modality,
                   series_table.c.num_instances)
            .join(studies, studies.c.id == series_table.c.study_pk)
            .where(studies.c.study_uid.in_(list(study_uids)))
            .order_by(series_table.c.num_instances.desc(), series_table.c.id))
    with engine.connect() as conn:
        return [SeriesSummary(str(a), str(b), str(c or ""), int(d or 0))
                for a, b, c, d in conn.execute(stmt)]


def counts(engine: Engine) -> tuple[int, int]:
    """(studies, instances) in the archive."""
    with engine.connect() as conn:
        n_studies = conn.execute(select(func.count()).select_from(studies)).scalar_one()
        n_instances = conn.execute(select(func.count()).select_from(instances)).scalar_one()
    return int(n_studies), int(n_instances)


def usage(engine: Engine) -> dict[str, tuple[int, int]]:
    """(studies, bytes stored) per owning institution: the admin's storage figures."""
    stmt = select(studies.c.institution_id, func.count(), func.coalesce(
        func.sum(studies.c.size_bytes), 0)).group_by(studies.c.institution_id)
    with engine.connect() as conn:
        return {str(i): (int(n), int(b)) for i, n, b in conn.execute(stmt)}


# -- what a conclusion document says of its studies --------------------------------------------


@dataclass(frozen=True)
class StudyFacts:
    study_uid: str
    institution_id: str
    study_date: str
    modalities: str
    description: str
    accession_number: str
    patient_id: str
    patient_name: str
    birth_date: str
    sex: str


def study_facts(engine: Engine, study_uids: Sequence[str]) -> list[StudyFacts]:
    """The index's facts of each known study, in the order asked."""
    stmt = (select(studies.c.study_uid, studies.c.institution_id, studies.c.study_date,
                   studies.c.modalities, studies.c.description,
                   studies.c.accession_number, patients.c.patient_id,
                   patients.c.patient_name, patients.c.birth_date, patients.c.sex)
            .join(patients, patients.c.id == studies.c.patient_pk)
            .where(studies.c.study_uid.in_(list(study_uids))))
    with engine.connect() as conn:
        rows = {r[0]: StudyFacts(*(str(v or "") for v in r)) for r in conn.execute(stmt).all()}
    return [rows[uid] for uid in study_uids if uid in rows]


def study_header(store: ArchiveStore, study_uid: str) -> tuple[Dataset, str]:
    """The header (no pixel data) of the study's first stored instance, and the study's owner;
    what a new instance joining the study copies its patient and study attributes from.
    :class:`LookupError` if the study has no stored instance."""
    stmt = (select(instances.c.path, studies.c.institution_id)
            .join(series_table, series_table.c.id == instances.c.series_pk)
            .join(studies, studies.c.id == series_table.c.study_pk)
            .where(studies.c.study_uid == study_uid)
            .order_by(instances.c.id).limit(1))
    with store.engine.connect() as conn:
        row = conn.execute(stmt).first()
    if row is None:
        raise LookupError(f"study {study_uid} has no archived instance")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        header = dcmread(store.path_of(row[0]), stop_before_pixels=True)
    return header, str(row[1])
