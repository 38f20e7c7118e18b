"""The one way an instance enters the archive: C-STORE, STOW-RS and ``consilium import`` all call
:func:`ingest_dataset` or :func:`ingest_part10`.

Order of work, so that nothing acknowledged is ever lost and nothing partial is ever kept:
validate the complete structure and decode the header (one pass) -> write the file atomically
(fsync) -> sync its directory and index it in one transaction, where the SOP Instance UID's
unique constraint detects duplicates -> return the outcome (the caller acknowledges only
``STORED``/``DUPLICATE``). A crash between the file and the index leaves an unreferenced file that
was never acknowledged (storage's journal removes it at the next start).

The directory sync and the index transaction are a *group commit*
(:mod:`consilium.archive.group_commit`): the instances that several associations of a process
have written meanwhile share one directory fsync per study folder and one transaction (one WAL
sync); each still gets its own outcome, decided exactly as if it were alone, and none returns
before the round that holds it has committed.

Duplicate policy (a SOP Instance UID already stored): identical bytes -> ``DUPLICATE``, a success
(resending is idempotent); different content -> refused with ``CONFLICT`` under the default
``reject`` policy (the first version stays, its hash is named in the reason), or stored as the
new version under ``replace``.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from sqlalchemy import Engine, bindparam, func, insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError, OperationalError

from consilium.archive import storage
from consilium.archive.dicomfile import (
    InstanceHeader,
    UnreadableDicom,
    build_file_meta,
    check_structure,
    split_part10,
)
from consilium.archive.group_commit import GroupCommit
from consilium.archive.models import instances, patients, series_table, studies, utcnow
from consilium.settings import DuplicatePolicy

log = logging.getLogger(__name__)

_UID = re.compile(r"^[0-9A-Za-z.\-_]{1,64}$")  # lenient: real files carry non-conformant UIDs


class Outcome(StrEnum):
    STORED = "stored"
    DUPLICATE = "duplicate"
    REFUSED = "refused"


class Refusal(StrEnum):
    """Why an instance was refused; each maps to one DIMSE and one HTTP status."""

    UNREADABLE = "unreadable"  # truncated, garbage, not decodable
    MISSING_UID = "missing-uid"  # no Study/Series/SOP Instance/SOP Class UID
    MISMATCH = "mismatch"  # command and dataset disagree on SOP class/instance
    CONFLICT = "conflict"  # same SOP Instance UID, other content
    UNKNOWN_SOURCE = "unknown-source"  # no institution owns it
    OUT_OF_RESOURCES = "out-of-resources"  # disk or database failure


@dataclass(frozen=True)
class IngestSource:
    """Who delivered the instance: owner institution, calling AE and the channel."""

    institution_id: str
    source_ae: str = ""
    channel: str = "dimse"  # dimse | stow | import


@dataclass(frozen=True)
class IngestResult:
    outcome: Outcome
    sop_instance_uid: str = ""
    sop_class_uid: str = ""
    study_uid: str = ""
    refusal: Refusal | None = None
    reason: str = ""
    patient_id: str = ""

    @property
    def ok(self) -> bool:
        return self.outcome is not Outcome.REFUSED


@dataclass
class ArchiveStore:
    """Where and how the archive keeps instances; passed to every archive function."""

    engine: Engine
    storage_dir: Path
    fsync: bool = True
    duplicate_policy: DuplicatePolicy = DuplicatePolicy.REJECT
    direct_io: bool = True  # see storage: O_DIRECT writes where the file system has them

    def __post_init__(self) -> None:
        # the process's only writer of the index for ingest: one round at a time, so SQLite
        # sees one writer per process and no retries
        self.committer: GroupCommit[_Written, IngestResult | Exception] = GroupCommit(
            lambda batch: _commit_round(self, batch), gate=self.writer_lock)
        database = self.engine.url.database
        self._lock_path = (f"{database}.ingest-lock" if database not in (None, "", ":memory:")
                           and self.engine.url.get_backend_name() == "sqlite" else None)
        self._lock_fd: int | None = None
        # study/series UID -> primary key of rows known to be committed; a modality sends a
        # series instance after instance, so this saves two lookups per instance
        self._pks: dict[tuple[str, str], int] = {}

    @contextlib.contextmanager
    def writer_lock(self) -> Iterator[None]:
        """Across the processes of one SQLite archive, the ingest's index writers queue on a
        file lock: the kernel wakes the next one as soon as a commit ends, where SQLite's own
        busy handler would poll with sleeps of 1, 2, 5, 10 ms... (PostgreSQL queues itself).
        The committer holds it for a whole round (the gate of its group commit): its leader
        waits here, then takes every instance that queued meanwhile."""
        if self._lock_fd is None and self._lock_path is not None:
            try:
                self._lock_fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o640)
            except OSError as exc:  # e.g. a read-only folder: SQLite's busy handler remains
                log.warning("no ingest writer lock %s: %s", self._lock_path, exc)
                self._lock_path = None
        if self._lock_fd is None:
            yield
            return
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def cached_pk(self, key: tuple[str, str]) -> int | None:
        return self._pks.get(key)

    def remember(self, key: tuple[str, str], pk: int) -> None:
        if len(self._pks) > 4096:
            self._pks.clear()
        self._pks[key] = pk

    def forget(self, header: InstanceHeader) -> None:
        self._pks.pop(("study", header.study_uid), None)
        self._pks.pop(("series", header.series_uid), None)

    def path_of(self, relative_path: str) -> Path:
        return self.storage_dir / relative_path


def _refused(refusal: Refusal, reason: str, header: InstanceHeader | None = None) -> IngestResult:
    return IngestResult(
        Outcome.REFUSED,
        sop_instance_uid=header.sop_instance_uid if header else "",
        sop_class_uid=header.sop_class_uid if header else "",
        study_uid=header.study_uid if header else "",
        refusal=refusal,
        reason=reason,
        patient_id=header.patient_id if header else "",
    )


def _missing_uids(header: InstanceHeader) -> list[str]:
    fields = {
        "SOPClassUID": header.sop_class_uid,
        "SOPInstanceUID": header.sop_instance_uid,
        "StudyInstanceUID": header.study_uid,
        "SeriesInstanceUID": header.series_uid,
    }
    return [
        f"{name} ({'missing' if not v else 'invalid'})"
        for name, v in fields.items()
        if not _UID.match(v)
    ]


def ingest_dataset(
    store: ArchiveStore,
    dataset: bytes | memoryview,
    transfer_syntax: str,
    sop_class_uid: str,
    sop_instance_uid: str,
    source: IngestSource,
) -> IngestResult:
    """Ingest a dataset as received over the network (no file meta), keeping its bytes."""
    try:
        header = check_structure(dataset, transfer_syntax)
    except UnreadableDicom as exc:
        return _refused(Refusal.UNREADABLE, str(exc))
    verdict = _check_identity(header, sop_class_uid, sop_instance_uid)
    if verdict is not None:
        return verdict
    try:
        meta = build_file_meta(sop_class_uid, sop_instance_uid, transfer_syntax, source.source_ae)
    except ValueError as exc:
        return _refused(Refusal.MISSING_UID, f"unusable UIDs in the request: {exc}", header)
    return _store(store, [meta, dataset], header, transfer_syntax, source)


def ingest_part10(store: ArchiveStore, data: bytes, source: IngestSource) -> IngestResult:
    """Ingest a PS3.10 file (import, STOW-RS), keeping its bytes as they are."""
    try:
        part10 = split_part10(data)
        header = check_structure(memoryview(data)[part10.dataset_offset :], part10.transfer_syntax)
    except UnreadableDicom as exc:
        return _refused(Refusal.UNREADABLE, str(exc))
    meta = part10.meta
    verdict = _check_identity(
        header,
        str(meta.get("MediaStorageSOPClassUID", "")),
        str(meta.get("MediaStorageSOPInstanceUID", "")),
    )
    if verdict is not None:
        return verdict
    return _store(store, [data], header, part10.transfer_syntax, source)


def _check_identity(
    header: InstanceHeader, sop_class_uid: str, sop_instance_uid: str
) -> IngestResult | None:
    """Refuse missing UIDs, and a request (or file meta) that names another instance."""
    missing = _missing_uids(header)
    if missing:
        return _refused(Refusal.MISSING_UID, "required UIDs: " + ", ".join(missing), header)
    if sop_instance_uid and sop_instance_uid != header.sop_instance_uid:
        return _refused(
            Refusal.MISMATCH,
            f"SOP Instance UID of the request ({sop_instance_uid}) differs from the dataset's "
            f"({header.sop_instance_uid})",
            header,
        )
    if sop_class_uid and sop_class_uid != header.sop_class_uid:
        return _refused(
            Refusal.MISMATCH,
            f"SOP Class UID of the request ({sop_class_uid}) differs from the dataset's "
            f"({header.sop_class_uid})",
            header,
        )
    return None


@dataclass(frozen=True)
class _Written:
    """An instance whose file is written and fsynced, waiting for its directory and index."""

    header: InstanceHeader
    stored: storage.StoredFile
    transfer_syntax: str
    source: IngestSource


def _store(
    store: ArchiveStore,
    chunks: list[bytes | memoryview],
    header: InstanceHeader,
    transfer_syntax: str,
    source: IngestSource,
) -> IngestResult:
    sha256 = storage.sha256_of(chunks)
    try:
        stored = storage.write_atomic(
            store.storage_dir, chunks, sha256, header.study_uid, store.fsync,
            sync_directory=False, direct=store.direct_io,
        )
    except OSError as exc:
        log.error("cannot write %s: %s", header.sop_instance_uid, exc)
        return _refused(Refusal.OUT_OF_RESOURCES, f"storage failure: {exc.strerror}", header)
    try:
        result = store.committer.submit(_Written(header, stored, transfer_syntax, source))
    except BaseException:
        storage.discard(store.storage_dir, stored)
        raise
    if isinstance(result, Exception):
        storage.discard(store.storage_dir, stored)
        raise result
    if result.outcome is Outcome.REFUSED:
        storage.discard(store.storage_dir, stored)
    else:
        storage.settle(stored)
    return result


def _commit_round(store: ArchiveStore, batch: list[_Written]) -> list[IngestResult | Exception]:
    """One group commit round: the study folders' entries made durable (one fsync per folder),
    then the index rows of the whole batch in one transaction. Only then does any of them
    return, so an acknowledged instance has its file, its directory entry and its row."""
    try:
        storage.sync_directories({d for w in batch for d in w.stored.directories})
    except OSError as exc:
        log.error("cannot sync the directories of %d instances: %s", len(batch), exc)
        return [_refused(Refusal.OUT_OF_RESOURCES, f"storage failure: {exc.strerror}", w.header)
                for w in batch]
    if len(batch) > 1:
        try:
            return list(_index_round(store, batch))
        except OperationalError as exc:
            log.error("index failure for %d instances: %s", len(batch), exc)
            return [_refused(Refusal.OUT_OF_RESOURCES, "index database unavailable", w.header)
                    for w in batch]
        except Exception as exc:  # e.g. a concurrent writer of the same study: one by one
            log.info("group commit of %d instances retried one by one: %s", len(batch), exc)
    return [_index_alone(store, w) for w in batch]


def _index_alone(store: ArchiveStore, written: _Written) -> IngestResult | Exception:
    header = written.header
    try:
        return _index(store, header, written.stored, written.transfer_syntax, written.source)
    except OperationalError as exc:
        log.error("index failure for %s: %s", header.sop_instance_uid, exc)
        return _refused(Refusal.OUT_OF_RESOURCES, "index database unavailable", header)
    except Exception as exc:  # raised in the thread that submitted it
        return exc


def _index_round(store: ArchiveStore, batch: list[_Written]) -> list[IngestResult]:
    """Index several instances in one transaction. The rows already there for their SOP
    Instance UIDs are read in one query; an instance repeated within the batch is judged against
    the earlier one, as it would be had it arrived later. A unique constraint violation (another
    process indexed one of them meanwhile) rolls everything back; the caller then retries."""
    uids = {w.header.sop_instance_uid for w in batch}
    results: list[IngestResult] = []
    counts = _Counts()
    try:
        with store.engine.begin() as conn:
            known: dict[str, tuple[str, str]] = {
                row[0]: (row[1], row[2])
                for row in conn.execute(
                    select(instances.c.sop_uid, instances.c.sha256, instances.c.path).where(
                        instances.c.sop_uid.in_(uids)
                    )
                )
            }
            for w in batch:
                uid = w.header.sop_instance_uid
                existing = known.get(uid)
                if existing is not None:
                    verdict = _duplicate_verdict(store, w.header, existing, w.stored.sha256)
                    if verdict is not None:
                        results.append(verdict)
                        continue
                results.append(_index_in(conn, store, w.header, w.stored, w.transfer_syntax,
                                         w.source, replace=existing is not None, counts=counts))
                known[uid] = (w.stored.sha256, w.stored.relative_path)
            counts.apply(conn)
    except BaseException:
        for w in batch:  # primary keys remembered in the rolled back transaction
            store.forget(w.header)
        raise
    return results


def _existing(store: ArchiveStore, sop_uid: str) -> tuple[str, str] | None:
    with store.engine.connect() as conn:
        row = conn.execute(
            select(instances.c.sha256, instances.c.path).where(instances.c.sop_uid == sop_uid)
        ).first()
    return (row[0], row[1]) if row else None


def _duplicate_verdict(
    store: ArchiveStore, header: InstanceHeader, existing: tuple[str, str], sha256: str
) -> IngestResult | None:
    """None means: go on and store this as the new version."""
    if existing[0] == sha256:
        return IngestResult(
            Outcome.DUPLICATE, header.sop_instance_uid, header.sop_class_uid, header.study_uid,
            patient_id=header.patient_id,
        )
    if store.duplicate_policy is DuplicatePolicy.REJECT:
        log.warning(
            "refused %s: already stored with other content (kept sha256 %s, offered %s)",
            header.sop_instance_uid,
            existing[0],
            sha256,
        )
        return _refused(
            Refusal.CONFLICT,
            f"SOP Instance {header.sop_instance_uid} is already stored with other content "
            f"(sha256 {existing[0][:16]}...); the archive keeps the first version",
            header,
        )
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


def _study_pk(conn: Connection, header: InstanceHeader, institution_id: str) -> int:
    row = conn.execute(select(studies.c.id).where(studies.c.study_uid == header.study_uid)).first()
    if row:
        return int(row[0])
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
    return int(result.inserted_primary_key[0])  # type: ignore[index]


def _series_pk(conn: Connection, header: InstanceHeader, study_pk: int) -> int:
    row = conn.execute(
        select(series_table.c.id).where(series_table.c.series_uid == header.series_uid)
    ).first()
    if row:
        return int(row[0])
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
    return series_pk


def _index(
    store: ArchiveStore,
    header: InstanceHeader,
    stored: storage.StoredFile,
    transfer_syntax: str,
    source: IngestSource,
) -> IngestResult:
    """Index a written file. The SOP Instance UID's unique constraint decides duplicates, so
    the common case (a new instance) costs no extra query."""
    for attempt in (1, 2):
        existing = _existing(store, header.sop_instance_uid) if attempt == 2 else None
        if existing is not None:
            verdict = _duplicate_verdict(store, header, existing, stored.sha256)
            if verdict is not None:
                return verdict  # the caller discards what this write created
        try:
            with store.engine.begin() as conn:
                return _index_in(
                    conn,
                    store,
                    header,
                    stored,
                    transfer_syntax,
                    source,
                    replace=existing is not None,
                )
        except IntegrityError:
            store.forget(header)
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


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
class _Counts:
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


def _index_in(
    conn: Connection,
    store: ArchiveStore,
    header: InstanceHeader,
    stored: storage.StoredFile,
    transfer_syntax: str,
    source: IngestSource,
    replace: bool,
    counts: _Counts | None = None,
) -> IngestResult:
    """Index one instance; with ``counts``, its series and study counts are left to the
    caller (one UPDATE each per transaction, not per instance)."""
    study_pk = store.cached_pk(("study", header.study_uid))
    if study_pk is None:
        study_pk = _study_pk(conn, header, source.institution_id)
    series_pk = store.cached_pk(("series", header.series_uid))
    if series_pk is None:
        series_pk = _series_pk(conn, header, study_pk)
    old = None
    if replace:
        old = conn.execute(
            select(instances.c.id, instances.c.size_bytes, instances.c.path).where(
                instances.c.sop_uid == header.sop_instance_uid
            )
        ).first()
    values = dict(
        series_pk=series_pk,
        sop_class_uid=header.sop_class_uid,
        instance_number=header.instance_number,
        transfer_syntax_uid=transfer_syntax,
        number_of_frames=header.number_of_frames,
        rows=header.rows,
        columns=header.columns,
        path=stored.relative_path,
        size_bytes=stored.size,
        sha256=stored.sha256,
        source_ae=source.source_ae[:16],
        received_at=utcnow(),
    )
    if old is None:
        conn.execute(_INSERT_INSTANCE, {"sop_uid": header.sop_instance_uid, **values})
        if counts is not None:
            counts.add(series_pk, study_pk, stored.size)
        else:
            single = _Counts()
            single.add(series_pk, study_pk, stored.size)
            single.apply(conn)
    else:  # replace policy: a new version of an instance stored before
        conn.execute(update(instances).where(instances.c.id == old[0]).values(**values))
        conn.execute(
            update(studies)
            .where(studies.c.id == study_pk)
            .values(size_bytes=studies.c.size_bytes + stored.size - old[1], updated_at=utcnow())
        )
        log.warning("replaced %s (old file %s kept)", header.sop_instance_uid, old[2])
    store.remember(("study", header.study_uid), study_pk)
    store.remember(("series", header.series_uid), series_pk)
    return IngestResult(
        Outcome.STORED, header.sop_instance_uid, header.sop_class_uid, header.study_uid,
        patient_id=header.patient_id,
    )


def search_form(text: str) -> str:
    """How names are compared: Unicode case-folded, so 'иванов' finds 'ИВАНОВ^ИВАН'."""
    return text.casefold()


def count_instances(store: ArchiveStore) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(instances)).scalar_one())
