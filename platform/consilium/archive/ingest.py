"""The one way an instance enters the archive: C-STORE (both receive paths, and so also a
remote PACS's C-MOVE to us), STOW-RS, ``consilium import`` and the consult documents all call
:func:`ingest_dataset` or :func:`ingest_part10`.

Order of work, so that nothing acknowledged is ever lost and nothing partial is ever kept:
validate the complete structure, the pixel data and decode the header (one pass) -> write the
file atomically (fsync) -> sync its directory and index it in one transaction, where the SOP
Instance UID's unique constraint detects duplicates -> return the outcome (the caller
acknowledges only ``STORED``/``DUPLICATE``). A crash between the file and the index leaves an
unreferenced file that was never acknowledged (storage's journal removes it at the next start).

The directory sync and the index transaction are a *group commit*
(:mod:`consilium.archive.group_commit`): the instances that several associations of a process
have written meanwhile share one directory fsync per study folder and one transaction (one WAL
sync); each still gets its own outcome, decided exactly as if it were alone, and none returns
before the round that holds it has committed.

Ownership: an instance never lands in another institution's or another patient's study.
    It joins an existing study only when the study belongs to the sender's institution (the
    calling AE's institution, the STOW-RS caller's, the importer's) AND to the same patient
    (Patient ID and Issuer of Patient ID); it joins an existing series only when that series
    is in that same study. Otherwise it is refused (:data:`Refusal.FOREIGN`: C-STORE 0xC213,
    STOW-RS failure 0xC213 / HTTP 409) with an Error Comment that names neither the other
    institution nor the other patient, and audited as a denied store. A SOP Instance UID
    already stored for another institution is never overwritten nor acknowledged as a
    duplicate to that sender (the same refusal). The check runs inside the index transaction
    (so it also holds between the instances of one group-commit round) on the per-process row
    cache of :mod:`consilium.archive.ingest_index`: a modality sending a series costs no query
    for it after the first instance.

Duplicate policy (a SOP Instance UID already stored, by the same institution): the same
*dataset* -> ``DUPLICATE``, a success (resending is idempotent whatever the sender: the file
meta information, e.g. the Source AE Title of a PACS forwarding what a modality sent, or STOW-RS
versus C-STORE, does not count); identical files are recognised by their hash at once, other
files by the hash of the dataset after the file meta (the stored one's computed when first
needed and kept in ``instance.dataset_sha256``). A different dataset is refused with
``CONFLICT`` under the default ``reject`` policy (the first version stays, its hash is named in
the reason), or stored as the new version under ``replace``.

Pixel data is checked before anything is written (:mod:`consilium.archive.pixel_guard`):
declared sizes over the ``pixels.*`` limits are refused (:data:`Refusal.TOO_LARGE`), pixel data
that contradicts its transfer syntax is unreadable.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Engine, bindparam, func, select, update
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
from consilium.archive.ingest_index import (
    FOREIGN_INSTANCE,
    Counts,
    RowCache,
    index_instance,
    refused,
    search_form,
)
from consilium.archive.models import instances, series_table, studies
from consilium.archive.outcomes import IngestResult, IngestSource, Outcome, Refusal
from consilium.archive.pixel_guard import PixelLimits, ingest_problems
from consilium.audit import AuditAction, AuditOutcome, AuditTrail
from consilium.settings import DuplicatePolicy

__all__ = [
    "ArchiveStore", "IngestResult", "IngestSource", "Outcome", "Refusal", "count_instances",
    "ingest_dataset", "ingest_part10", "search_form",
]

log = logging.getLogger(__name__)

_UID = re.compile(r"^[0-9A-Za-z.\-_]{1,64}$")  # lenient: real files carry non-conformant UIDs


@dataclass
class ArchiveStore:
    """Where and how the archive keeps instances; passed to every archive function."""

    engine: Engine
    storage_dir: Path
    fsync: bool = True
    duplicate_policy: DuplicatePolicy = DuplicatePolicy.REJECT
    direct_io: bool = True  # see storage: O_DIRECT writes where the file system has them
    pixel_limits: PixelLimits = field(default_factory=PixelLimits)
    audit: AuditTrail | None = None  # where refused writes into foreign studies are recorded

    def __post_init__(self) -> None:
        # the process's only writer of the index for ingest: one round at a time, so SQLite
        # sees one writer per process and no retries
        self.committer: GroupCommit[_Written, IngestResult | Exception] = GroupCommit(
            lambda batch: _commit_round(self, batch), gate=self.writer_lock)
        database = self.engine.url.database
        self._lock_path = (f"{database}.ingest-lock" if database not in (None, "", ":memory:")
                           and self.engine.url.get_backend_name() == "sqlite" else None)
        self._lock_fd: int | None = None
        # study/series rows of this process with their owners: a modality sends a series
        # instance after instance, so this saves two lookups per instance
        self.rows = RowCache()

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

    def forget(self, header: InstanceHeader) -> None:
        self.rows.forget(header)

    def path_of(self, relative_path: str) -> Path:
        return self.storage_dir / relative_path


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


def _unreadable(exc: Exception) -> IngestResult:
    """Whatever the structure check raised: the object is refused as not understood (C-STORE
    0xC210), never answered as a processing failure."""
    if not isinstance(exc, UnreadableDicom):
        log.warning("structure check failed unexpectedly (%s: %s)", type(exc).__name__, exc)
        reason = f"dataset cannot be decoded ({type(exc).__name__})"
    else:
        reason = str(exc)
    return refused(Refusal.UNREADABLE, reason)


def ingest_dataset(
    store: ArchiveStore,
    dataset: bytes | memoryview,
    transfer_syntax: str,
    sop_class_uid: str,
    sop_instance_uid: str,
    source: IngestSource,
) -> IngestResult:
    """Ingest a dataset as received over the network (no file meta), keeping its bytes."""
    view = memoryview(dataset)
    try:
        header = check_structure(view, transfer_syntax)
    except Exception as exc:  # every malformed input gets the same answer
        return _unreadable(exc)
    verdict = _check_identity(header, sop_class_uid, sop_instance_uid) or _check_pixels(
        store, header, view, transfer_syntax)
    if verdict is not None:
        return verdict
    try:
        meta = build_file_meta(sop_class_uid, sop_instance_uid, transfer_syntax, source.source_ae)
    except ValueError as exc:
        return refused(Refusal.MISSING_UID, f"unusable UIDs in the request: {exc}", header)
    return _store(store, [meta, dataset], header, transfer_syntax, source, view)


def ingest_part10(store: ArchiveStore, data: bytes, source: IngestSource) -> IngestResult:
    """Ingest a PS3.10 file (import, STOW-RS), keeping its bytes as they are."""
    try:
        part10 = split_part10(data)
        view = memoryview(data)[part10.dataset_offset :]
        header = check_structure(view, part10.transfer_syntax)
    except Exception as exc:  # every malformed input gets the same answer
        return _unreadable(exc)
    meta = part10.meta
    verdict = _check_identity(
        header,
        str(meta.get("MediaStorageSOPClassUID", "")),
        str(meta.get("MediaStorageSOPInstanceUID", "")),
    ) or _check_pixels(store, header, view, part10.transfer_syntax)
    if verdict is not None:
        return verdict
    return _store(store, [data], header, part10.transfer_syntax, source, view)


def _check_identity(
    header: InstanceHeader, sop_class_uid: str, sop_instance_uid: str
) -> IngestResult | None:
    """Refuse missing UIDs, and a request (or file meta) that names another instance."""
    missing = _missing_uids(header)
    if missing:
        return refused(Refusal.MISSING_UID, "required UIDs: " + ", ".join(missing), header)
    if sop_instance_uid and sop_instance_uid != header.sop_instance_uid:
        return refused(
            Refusal.MISMATCH,
            f"SOP Instance UID of the request ({sop_instance_uid}) differs from the dataset's "
            f"({header.sop_instance_uid})",
            header,
        )
    if sop_class_uid and sop_class_uid != header.sop_class_uid:
        return refused(
            Refusal.MISMATCH,
            f"SOP Class UID of the request ({sop_class_uid}) differs from the dataset's "
            f"({header.sop_class_uid})",
            header,
        )
    return None


def _check_pixels(store: ArchiveStore, header: InstanceHeader, dataset: memoryview,
                  transfer_syntax: str) -> IngestResult | None:
    problem = ingest_problems(header, dataset, transfer_syntax, store.pixel_limits)
    if problem is None:
        return None
    kind, reason = problem
    return refused(Refusal.TOO_LARGE if kind == "too-large" else Refusal.UNREADABLE, reason,
                   header)


@dataclass(frozen=True)
class _Written:
    """An instance whose file is written and fsynced, waiting for its directory and index."""

    header: InstanceHeader
    stored: storage.StoredFile
    transfer_syntax: str
    source: IngestSource
    dataset: memoryview  # the bytes after the file meta, hashed only if a duplicate needs it


def _store(
    store: ArchiveStore,
    chunks: list[bytes | memoryview],
    header: InstanceHeader,
    transfer_syntax: str,
    source: IngestSource,
    dataset: memoryview,
) -> IngestResult:
    sha256 = storage.sha256_of(chunks)
    try:
        stored = storage.write_atomic(
            store.storage_dir, chunks, sha256, header.study_uid, store.fsync,
            sync_directory=False, direct=store.direct_io,
        )
    except OSError as exc:
        log.error("cannot write %s: %s", header.sop_instance_uid, exc)
        return refused(Refusal.OUT_OF_RESOURCES, f"storage failure: {exc.strerror}", header)
    try:
        result = store.committer.submit(_Written(header, stored, transfer_syntax, source, dataset))
    except BaseException:
        storage.discard(store.storage_dir, stored)
        raise
    if isinstance(result, Exception):
        storage.discard(store.storage_dir, stored)
        raise result
    if result.outcome is Outcome.REFUSED:
        storage.discard(store.storage_dir, stored)
        if result.refusal is Refusal.FOREIGN:
            _audit_foreign(store, source, header, result.reason)
    elif result.outcome is Outcome.DUPLICATE and result.kept_sha256 != stored.sha256:
        storage.discard(store.storage_dir, stored)  # the same dataset in another file: not kept
    else:
        storage.settle(stored)
    return result


def _audit_foreign(store: ArchiveStore, source: IngestSource, header: InstanceHeader,
                   reason: str) -> None:
    """A denied store, recorded as what the sender asked for: its own patient and the UIDs
    it sent. Without a Patient ID the study UID goes into the detail only: the audit trail
    would otherwise name the patient of that (foreign) study in the sender's record."""
    log.warning("refused %s from %s (%s, %s): %s", header.sop_instance_uid,
                source.source_ae or source.channel, source.institution_id, source.channel, reason)
    if store.audit is None:
        return
    detail = {"what": "store", "channel": source.channel, "reason": reason,
              "study_uid": header.study_uid, "series_uid": header.series_uid,
              "sop_instance_uid": header.sop_instance_uid}
    try:
        store.audit.record(
            source.audit_actor(), AuditAction.DENIED, AuditOutcome.DENIED,
            study_uid=header.study_uid if header.patient_id else "",
            patient_id=header.patient_id, patient_name=header.patient_name, detail=detail)
    except Exception:  # the refusal stands even when the audit database is down
        log.exception("cannot audit the refused store of %s", header.sop_instance_uid)


def _commit_round(store: ArchiveStore, batch: list[_Written]) -> list[IngestResult | Exception]:
    """One group commit round: the study folders' entries made durable (one fsync per folder),
    then the index rows of the whole batch in one transaction. Only then does any of them
    return, so an acknowledged instance has its file, its directory entry and its row."""
    try:
        storage.sync_directories({d for w in batch for d in w.stored.directories})
    except OSError as exc:
        log.error("cannot sync the directories of %d instances: %s", len(batch), exc)
        return [refused(Refusal.OUT_OF_RESOURCES, f"storage failure: {exc.strerror}", w.header)
                for w in batch]
    if len(batch) > 1:
        try:
            return list(_index_round(store, batch))
        except OperationalError as exc:
            log.error("index failure for %d instances: %s", len(batch), exc)
            return [refused(Refusal.OUT_OF_RESOURCES, "index database unavailable", w.header)
                    for w in batch]
        except Exception as exc:  # e.g. a concurrent writer of the same study: one by one
            log.info("group commit of %d instances retried one by one: %s", len(batch), exc)
    return [_index_alone(store, w) for w in batch]


def _index_alone(store: ArchiveStore, written: _Written) -> IngestResult | Exception:
    header = written.header
    try:
        return _index(store, written)
    except OperationalError as exc:
        log.error("index failure for %s: %s", header.sop_instance_uid, exc)
        return refused(Refusal.OUT_OF_RESOURCES, "index database unavailable", header)
    except Exception as exc:  # raised in the thread that submitted it
        return exc


@dataclass(frozen=True)
class _Existing:
    """What the duplicate policy needs of an instance already indexed (or indexed earlier in
    the same round: then its dataset bytes are still at hand)."""

    sha256: str
    path: str
    institution_id: str
    transfer_syntax: str
    dataset_sha256: str | None
    dataset: memoryview | None = None


_EXISTING = (
    select(instances.c.sop_uid, instances.c.sha256, instances.c.path, studies.c.institution_id,
           instances.c.transfer_syntax_uid, instances.c.dataset_sha256)
    .select_from(instances.join(series_table, series_table.c.id == instances.c.series_pk)
                 .join(studies, studies.c.id == series_table.c.study_pk))
    .where(instances.c.sop_uid.in_(bindparam("uids", expanding=True)))
)
_SET_DATASET_HASH = (update(instances).where(instances.c.sop_uid == bindparam("uid"))
                     .values(dataset_sha256=bindparam("digest")))


def _existing(conn: Connection, uids: set[str]) -> dict[str, _Existing]:
    return {row[0]: _Existing(row[1], row[2], row[3], row[4], row[5])
            for row in conn.execute(_EXISTING, {"uids": sorted(uids)})}


def _stored_dataset_digest(store: ArchiveStore, conn: Connection, sop_uid: str,
                           existing: _Existing) -> str | None:
    """The dataset hash of the instance already there: kept in its row, or computed from its
    file and kept (rows from before the column, and every instance the first time an other
    sender's copy comes). None if its file cannot be read (then it cannot be the same)."""
    if existing.dataset_sha256 is not None:
        return existing.dataset_sha256
    if existing.dataset is not None:
        return hashlib.sha256(existing.dataset).hexdigest()
    try:
        data = store.path_of(existing.path).read_bytes()
        digest = hashlib.sha256(memoryview(data)[split_part10(data).dataset_offset:]).hexdigest()
    except (OSError, UnreadableDicom) as exc:
        log.error("cannot read the stored %s to compare it: %s", sop_uid, exc)
        return None
    conn.execute(_SET_DATASET_HASH, {"uid": sop_uid, "digest": digest})
    return digest


def _duplicate_verdict(store: ArchiveStore, conn: Connection, written: _Written,
                       existing: _Existing) -> IngestResult | None:
    """None means: go on and store this as the new version."""
    header = written.header
    if existing.institution_id != written.source.institution_id:
        return refused(Refusal.FOREIGN, FOREIGN_INSTANCE, header)
    same = existing.sha256 == written.stored.sha256 or (
        existing.transfer_syntax == written.transfer_syntax
        and _stored_dataset_digest(store, conn, header.sop_instance_uid, existing)
        == hashlib.sha256(written.dataset).hexdigest())
    if same:
        return IngestResult(
            Outcome.DUPLICATE, header.sop_instance_uid, header.sop_class_uid, header.study_uid,
            patient_id=header.patient_id, kept_sha256=existing.sha256,
        )
    if store.duplicate_policy is DuplicatePolicy.REJECT:
        log.warning(
            "refused %s: already stored with other content (kept sha256 %s, offered %s)",
            header.sop_instance_uid,
            existing.sha256,
            written.stored.sha256,
        )
        return refused(
            Refusal.CONFLICT,
            f"SOP Instance {header.sop_instance_uid} is already stored with other content "
            f"(sha256 {existing.sha256[:16]}...); the archive keeps the first version",
            header,
        )
    return None


def _index(store: ArchiveStore, written: _Written) -> IngestResult:
    """Index a written file. The SOP Instance UID's unique constraint decides duplicates, so
    the common case (a new instance) costs no extra query."""
    header = written.header
    for attempt in (1, 2):
        try:
            with store.engine.begin() as conn:
                existing = (_existing(conn, {header.sop_instance_uid}).get(
                    header.sop_instance_uid) if attempt == 2 else None)
                if existing is not None:
                    verdict = _duplicate_verdict(store, conn, written, existing)
                    if verdict is not None:
                        return verdict  # the caller discards what this write created
                return index_instance(conn, store.rows, header, written.stored,
                                      written.transfer_syntax, written.source,
                                      replace=existing is not None)
        except IntegrityError:
            store.forget(header)
            if attempt == 2:
                raise
        except BaseException:  # rows remembered in the rolled back transaction
            store.forget(header)
            raise
    raise AssertionError("unreachable")


def _index_round(store: ArchiveStore, batch: list[_Written]) -> list[IngestResult]:
    """Index several instances in one transaction. The rows already there for their SOP
    Instance UIDs are read in one query; an instance repeated within the batch is judged against
    the earlier one, as it would be had it arrived later (ownership included: the rows an
    earlier instance of the round made are in the row cache). A unique constraint violation
    (another process indexed one of them meanwhile) rolls everything back; the caller then
    retries one by one."""
    results: list[IngestResult] = []
    counts = Counts()
    try:
        with store.engine.begin() as conn:
            known = _existing(conn, {w.header.sop_instance_uid for w in batch})
            for w in batch:
                uid = w.header.sop_instance_uid
                existing = known.get(uid)
                if existing is not None:
                    verdict = _duplicate_verdict(store, conn, w, existing)
                    if verdict is not None:
                        results.append(verdict)
                        continue
                result = index_instance(conn, store.rows, w.header, w.stored, w.transfer_syntax,
                                        w.source, replace=existing is not None, counts=counts)
                results.append(result)
                if result.outcome is Outcome.STORED:
                    known[uid] = _Existing(w.stored.sha256, w.stored.relative_path,
                                           w.source.institution_id, w.transfer_syntax, None,
                                           w.dataset)
            counts.apply(conn)
    except BaseException:
        for w in batch:  # rows remembered in the rolled back transaction
            store.forget(w.header)
        raise
    return results


def count_instances(store: ArchiveStore) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(instances)).scalar_one())
