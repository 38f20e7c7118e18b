"""The index rows of an ingested instance (patient, study, series, instance), written inside
the ingest's transaction, and the ownership rule they enforce.

Ownership (the rule :mod:`consilium.archive.ingest` documents): an instance joins an existing
study only when that study belongs to the sending institution and to the same patient (Patient
ID and Issuer of Patient ID), and an existing series only when that series is in that study.
Otherwise :func:`index_instance` refuses it with :data:`Refusal.FOREIGN` before writing any row.

The study and series of a modality's series are the same instance after instance, so the rows
found or made are remembered per process (:class:`RowCache`) with what the rule needs (owner
institution and patient of a study, the study of a series): the check then costs no query.
Those facts never change once a row exists (nothing deletes or re-parents a study or series),
so a remembered row is as good as a fresh read; rows made in a transaction that rolls back are
forgotten by the caller.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.engine import Connection

from consilium.archive import storage
from consilium.archive.dicomfile import InstanceHeader
from consilium.archive.models import instances, patients, series_table, studies, utcnow
from consilium.archive.outcomes import IngestResult, IngestSource, Outcome, Refusal

log = logging.getLogger(__name__)

# Error Comments (LO: at most 64 characters) that name neither the other institution nor the
# other patient: a refusal must not tell a sender whose study a UID is
FOREIGN_STUDY = "StudyInstanceUID is another institution's or patient's study"
FOREIGN_SERIES = "SeriesInstanceUID belongs to another study"
FOREIGN_INSTANCE = "SOPInstanceUID is stored for another institution"


@dataclass(frozen=True)
class StudyRow:
    """What the ownership rule needs of a study row."""

    pk: int
    institution_id: str
    patient_id: str
    issuer: str


@dataclass(frozen=True)
class SeriesRow:
    pk: int
    study_pk: int


@dataclass
class RowCache:
    """Study and series rows of this process, by UID (see the module docstring)."""

    studies: dict[str, StudyRow] = field(default_factory=dict)
    series: dict[str, SeriesRow] = field(default_factory=dict)
    limit: int = 4096

    def remember_study(self, uid: str, row: StudyRow) -> None:
        if len(self.studies) >= self.limit:
            self.studies.clear()
        self.studies[uid] = row

    def remember_series(self, uid: str, row: SeriesRow) -> None:
        if len(self.series) >= self.limit:
            self.series.clear()
        self.series[uid] = row

    def forget(self, header: InstanceHeader) -> None:
        self.studies.pop(header.study_uid, None)
        self.series.pop(header.series_uid, None)


def refused(refusal: Refusal, reason: str, header: InstanceHeader | None = None) -> IngestResult:
    """A refusal; its reason becomes a C-STORE Error Comment (LO: one value, so no
    backslash) and a STOW-RS warning."""
    return IngestResult(
        Outcome.REFUSED,
        sop_instance_uid=header.sop_instance_uid if header else "",
        sop_class_uid=header.sop_class_uid if header else "",
        study_uid=header.study_uid if header else "",
        refusal=refusal,
        reason=reason.replace("\\", "/"),
        patient_id=header.patient_id if header else "",
    )


def search_form(text: str) -> str:
    """How names are compared: Unicode case-folded, so 'иванов' finds 'ИВАНОВ^ИВАН'."""
    return text.casefold()


_FIND_STUDY = (
    select(studies.c.id, studies.c.institution_id, patients.c.patient_id, patients.c.issuer)
    .select_from(studies.join(patients, patients.c.id == studies.c.patient_pk))
    .where(studies.c.study_uid == bindparam("uid"))
)
_FIND_SERIES = select(series_table.c.id, series_table.c.study_pk).where(
    series_table.c.series_uid == bindparam("uid"))


def _study_row(conn: Connection, cache: RowCache, uid: str) -> StudyRow | None:
    row = cache.studies.get(uid)
    if row is not None:
        return row
    found = conn.execute(_FIND_STUDY, {"uid": uid}).first()
    if found is None:
        return None
    row = StudyRow(int(found[0]), str(found[1]), str(found[2]), str(found[3]))
    cache.remember_study(uid, row)
    return row


def _series_row(conn: Connection, cache: RowCache, uid: str) -> SeriesRow | None:
    row = cache.series.get(uid)
    if row is not None:
        return row
    found = conn.execute(_FIND_SERIES, {"uid": uid}).first()
    if found is None:
        return None
    row = SeriesRow(int(found[0]), int(found[1]))
    cache.remember_series(uid, row)
    return row


def ownership_problem(study: StudyRow | None, series: SeriesRow | None,
                      header: InstanceHeader, institution_id: str) -> str | None:
    """The Error Comment refusing ``header`` from ``institution_id`` into these rows, or None
    when it may join them (or make them)."""
    if study is not None and (study.institution_id != institution_id
                              or study.patient_id != header.patient_id
                              or study.issuer != header.issuer):
        return FOREIGN_STUDY
    if series is not None and (study is None or series.study_pk != study.pk):
        return FOREIGN_SERIES
    return None


def _patient_pk(conn: Connection, header: InstanceHeader, institution_id: str) -> int:
    row = conn.execute(
        select(patients.c.id).where(
            patients.c.institution_id == institution_id,
            patients.c.patient_id == header.patient_id,
            patients.c.issuer == header.issuer,
        )
    ).first()
    if row:
        return int(row[0])
    result = conn.execute(
        insert(patients).values(
            institution_id=institution_id,
            patient_id=header.patient_id,
            issuer=header.issuer,
            patient_name=header.patient_name,
            patient_name_search=search_form(header.patient_name),
            birth_date=header.birth_date,
            sex=header.sex,
            created_at=utcnow(),
        )
    )
    return int(result.inserted_primary_key[0])  # type: ignore[index]


def _new_study(conn: Connection, header: InstanceHeader, institution_id: str) -> StudyRow:
    now = utcnow()
    result = conn.execute(
        insert(studies).values(
            study_uid=header.study_uid,
            patient_pk=_patient_pk(conn, header, institution_id),
            institution_id=institution_id,
            study_date=header.study_date,
            study_time=header.study_time,
            accession_number=header.accession_number,
            study_id=header.study_id,
            description=header.study_description,
            referring_physician=header.referring_physician,
            referring_physician_search=search_form(header.referring_physician),
            modalities="",
            num_series=0,
            num_instances=0,
            size_bytes=0,
            created_at=now,
            updated_at=now,
        )
    )
    return StudyRow(int(result.inserted_primary_key[0]),  # type: ignore[index]
                    institution_id, header.patient_id, header.issuer)


def _new_series(conn: Connection, header: InstanceHeader, study_pk: int) -> SeriesRow:
    result = conn.execute(
        insert(series_table).values(
            series_uid=header.series_uid,
            study_pk=study_pk,
            modality=header.modality,
            series_number=header.series_number,
            description=header.series_description,
            body_part=header.body_part,
            series_date=header.series_date,
            series_time=header.series_time,
            num_instances=0,
            created_at=utcnow(),
        )
    )
    series_pk = int(result.inserted_primary_key[0])  # type: ignore[index]
    modalities = conn.execute(
        select(series_table.c.modality).where(series_table.c.study_pk == study_pk).distinct()
    ).scalars()
    joined = "\\".join(sorted({m for m in modalities if m}))
    conn.execute(
        update(studies)
        .where(studies.c.id == study_pk)
        .values(num_series=studies.c.num_series + 1, modalities=joined[:128])
    )
    return SeriesRow(series_pk, study_pk)


# The statements of the common case (a new instance), built once: building a Core construct per
# instance costs more CPU than executing it from SQLAlchemy's compiled cache.
_INSERT_INSTANCE = insert(instances)
_COUNT_SERIES = (
    update(series_table)
    .where(series_table.c.id == bindparam("pk"))
    .values(num_instances=series_table.c.num_instances + bindparam("count"))
)
_COUNT_STUDY = (
    update(studies)
    .where(studies.c.id == bindparam("pk"))
    .values(
        num_instances=studies.c.num_instances + bindparam("count"),
        size_bytes=studies.c.size_bytes + bindparam("size"),
        updated_at=bindparam("now"),
    )
)


@dataclass
class Counts:
    """New instances per series and (count, bytes) per study, added once per transaction."""

    series: dict[int, int] = field(default_factory=dict)
    studies: dict[int, tuple[int, int]] = field(default_factory=dict)

    def add(self, series_pk: int, study_pk: int, size: int) -> None:
        self.series[series_pk] = self.series.get(series_pk, 0) + 1
        count, total = self.studies.get(study_pk, (0, 0))
        self.studies[study_pk] = (count + 1, total + size)

    def apply(self, conn: Connection) -> None:
        for pk, count in self.series.items():
            conn.execute(_COUNT_SERIES, {"pk": pk, "count": count})
        now = utcnow()
        for pk, (count, size) in self.studies.items():
            conn.execute(_COUNT_STUDY, {"pk": pk, "count": count, "size": size, "now": now})


def index_instance(
    conn: Connection,
    cache: RowCache,
    header: InstanceHeader,
    stored: storage.StoredFile,
    transfer_syntax: str,
    source: IngestSource,
    replace: bool,
    counts: Counts | None = None,
) -> IngestResult:
    """Index one instance, or refuse it by the ownership rule without writing anything. With
    ``counts``, its series and study counts are left to the caller (one UPDATE each per
    transaction, not per instance)."""
    study = _study_row(conn, cache, header.study_uid)
    series = _series_row(conn, cache, header.series_uid)
    problem = ownership_problem(study, series, header, source.institution_id)
    if problem is not None:
        return refused(Refusal.FOREIGN, problem, header)
    if study is None:
        study = _new_study(conn, header, source.institution_id)
        cache.remember_study(header.study_uid, study)
    if series is None:
        series = _new_series(conn, header, study.pk)
        cache.remember_series(header.series_uid, series)
    old = None
    if replace:
        old = conn.execute(
            select(instances.c.id, instances.c.size_bytes, instances.c.path).where(
                instances.c.sop_uid == header.sop_instance_uid
            )
        ).first()
    values = dict(
        series_pk=series.pk,
        sop_class_uid=header.sop_class_uid,
        instance_number=header.instance_number,
        transfer_syntax_uid=transfer_syntax,
        number_of_frames=header.number_of_frames,
        rows=header.rows,
        columns=header.columns,
        path=stored.relative_path,
        size_bytes=stored.size,
        sha256=stored.sha256,
        dataset_sha256=None,
        source_ae=source.source_ae[:16],
        received_at=utcnow(),
    )
    if old is None:
        conn.execute(_INSERT_INSTANCE, {"sop_uid": header.sop_instance_uid, **values})
        if counts is not None:
            counts.add(series.pk, study.pk, stored.size)
        else:
            single = Counts()
            single.add(series.pk, study.pk, stored.size)
            single.apply(conn)
    else:  # replace policy: a new version of an instance stored before
        conn.execute(update(instances).where(instances.c.id == old[0]).values(**values))
        conn.execute(
            update(studies)
            .where(studies.c.id == study.pk)
            .values(size_bytes=studies.c.size_bytes + stored.size - old[1], updated_at=utcnow())
        )
        log.warning("replaced %s (old file %s kept)", header.sop_instance_uid, old[2])
    return IngestResult(
        Outcome.STORED, header.sop_instance_uid, header.sop_class_uid, header.study_uid,
        patient_id=header.patient_id,
    )
