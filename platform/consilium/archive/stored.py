"""Where the stored files of a study, series or instance are, and who owns them: what WADO-RS,
the rendered and thumbnail resources and the gate read from the index."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Engine, func, select

from consilium.archive.models import instances, series_table, studies
from consilium.archive.query import Level


@dataclass(frozen=True)
class StoredInstance:
    """One stored file of a study, as WADO-RS needs it."""

    study_uid: str
    series_uid: str
    sop_uid: str
    sop_class_uid: str
    transfer_syntax_uid: str
    path: str
    size_bytes: int
    sha256: str
    number_of_frames: int
    rows: int | None
    columns: int | None
    instance_number: int | None
    series_number: int | None
    institution_id: str


def stored_instances(
    engine: Engine, study_uid: str, series_uid: str | None = None, sop_uid: str | None = None
) -> list[StoredInstance]:
    """The instances of a study (or of one series, or one instance), in series and instance
    order; empty if nothing matches."""
    stmt = (
        select(
            studies.c.study_uid,
            series_table.c.series_uid,
            instances.c.sop_uid,
            instances.c.sop_class_uid,
            instances.c.transfer_syntax_uid,
            instances.c.path,
            instances.c.size_bytes,
            instances.c.sha256,
            instances.c.number_of_frames,
            instances.c.rows,
            instances.c.columns,
            instances.c.instance_number,
            series_table.c.series_number,
            studies.c.institution_id,
        )
        .select_from(studies)
        .join(series_table, series_table.c.study_pk == studies.c.id)
        .join(instances, instances.c.series_pk == series_table.c.id)
        .where(studies.c.study_uid == study_uid)
    )
    if series_uid is not None:
        stmt = stmt.where(series_table.c.series_uid == series_uid)
    if sop_uid is not None:
        stmt = stmt.where(instances.c.sop_uid == sop_uid)
    stmt = stmt.order_by(
        func.coalesce(series_table.c.series_number, 2**31),
        series_table.c.id,
        func.coalesce(instances.c.instance_number, 2**31),
        instances.c.id,
    )
    with engine.connect() as conn:
        return [StoredInstance(*row) for row in conn.execute(stmt).all()]  # type: ignore[call-arg]


def study_owner(engine: Engine, study_uid: str, series_uid: str | None = None) -> str | None:
    """The institution owning a study (and, if given, holding that series); None if unknown."""
    stmt = select(studies.c.institution_id).where(studies.c.study_uid == study_uid)
    if series_uid is not None:
        stmt = stmt.join(series_table, series_table.c.study_pk == studies.c.id).where(
            series_table.c.series_uid == series_uid
        )
    with engine.connect() as conn:
        row = conn.execute(stmt.limit(1)).first()
    return str(row[0]) if row else None


def first_files(engine: Engine, level: Level, uids: Sequence[str]) -> dict[str, tuple[str, str]]:
    """UID -> (sha256, relative path) of an instance, of a series' or a study's first instance;
    where QIDO-RS finds attributes the index does not hold."""
    if not uids:
        return {}
    key = {
        Level.STUDY: studies.c.study_uid,
        Level.SERIES: series_table.c.series_uid,
        Level.IMAGE: instances.c.sop_uid,
    }[level]
    joined = (
        select(key, func.min(instances.c.id).label("first"))
        .select_from(instances)
        .join(series_table, series_table.c.id == instances.c.series_pk)
        .join(studies, studies.c.id == series_table.c.study_pk)
        .where(key.in_(list(uids)))
        .group_by(key)
        .subquery()
    )
    stmt = select(joined.c[0], instances.c.sha256, instances.c.path).join(
        instances, instances.c.id == joined.c.first
    )
    with engine.connect() as conn:
        return {str(r[0]): (str(r[1]), str(r[2])) for r in conn.execute(stmt).all()}


def instance_locations(engine: Engine, sop_uids: Sequence[str]) -> dict[str, tuple[str, str]]:
    """SOP Instance UID -> (study UID, series UID) of stored instances."""
    out: dict[str, tuple[str, str]] = {}
    uids = list(dict.fromkeys(sop_uids))
    with engine.connect() as conn:
        for start in range(0, len(uids), 500):
            stmt = (
                select(instances.c.sop_uid, studies.c.study_uid, series_table.c.series_uid)
                .select_from(instances)
                .join(series_table, series_table.c.id == instances.c.series_pk)
                .join(studies, studies.c.id == series_table.c.study_pk)
                .where(instances.c.sop_uid.in_(uids[start : start + 500]))
            )
            out.update({str(r[0]): (str(r[1]), str(r[2])) for r in conn.execute(stmt).all()})
    return out
