"""Retrieves of PACS studies into the archive as jobs with progress: opening or linking a
remote study starts one and the page polls it (a bar: instances arrived of those expected);
a consult's remote studies are started the same way when it is submitted (prefetch).

The jobs of a process live in memory (a retrieve is repeatable: a study retrieved twice is
stored once, identical instances being idempotent), at most ``federation.retrieve_workers`` run
at once, and the same study from the same source is one job while it runs. Progress comes from
the PACS (C-MOVE pending responses; WADO-RS parts as they are ingested) and, for a PACS that
sends no pending responses, from the archive's index (instances of the study held).

Every retrieve is audited (``fetch``, with its outcome and counts) as its requester.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import StrEnum

from pydantic import BaseModel, Field
from sqlalchemy import Engine, func, select

from consilium.archive import remote, remote_web
from consilium.archive.federation import Source, SourceKind
from consilium.archive.ingest import ArchiveStore
from consilium.archive.models import studies
from consilium.audit import Actor, AuditAction, AuditOutcome, AuditTrail
from consilium.settings import Settings

log = logging.getLogger(__name__)

KEEP_FINISHED = 500  # finished jobs remembered for their pages to read the outcome


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class RetrieveJobPublic(BaseModel):
    """A retrieve as its page follows it."""

    id: str
    source: str
    study_uid: str
    state: JobState
    expected: int | None = Field(description="instances the PACS said the study has")
    completed: int
    failed: int
    received_bytes: int
    error: str = ""
    in_archive: bool = False
    elapsed_ms: int = 0


@dataclass
class RetrieveJob:
    id: str
    source: Source
    study_uid: str
    requester: Actor
    expected: int | None = None
    state: JobState = JobState.QUEUED
    completed: int = 0
    failed: int = 0
    received_bytes: int = 0
    error: str = ""
    in_archive: bool = False
    started: float = field(default_factory=time.monotonic)
    ended: float | None = None
    done: threading.Event = field(default_factory=threading.Event)
    callbacks: list[Callable[[RetrieveJob], None]] = field(default_factory=list)

    def public(self) -> RetrieveJobPublic:
        end = self.ended if self.ended is not None else time.monotonic()
        return RetrieveJobPublic(
            id=self.id, source=self.source.id, study_uid=self.study_uid, state=self.state,
            expected=self.expected, completed=self.completed, failed=self.failed,
            received_bytes=self.received_bytes, error=self.error, in_archive=self.in_archive,
            elapsed_ms=int((end - self.started) * 1000))


def held_instances(engine: Engine, study_uid: str) -> int:
    """Instances of the study in the archive's index."""
    with engine.connect() as conn:
        value = conn.execute(select(studies.c.num_instances).where(
            studies.c.study_uid == study_uid)).scalar()
    return int(value or 0)


def in_archive(engine: Engine, study_uid: str) -> bool:
    with engine.connect() as conn:
        return bool(conn.execute(select(func.count()).select_from(studies).where(
            studies.c.study_uid == study_uid)).scalar())


class Retrievals:
    """The process's retrieve jobs (see the module)."""

    def __init__(self, settings: Settings, store: ArchiveStore, audit: AuditTrail) -> None:
        self.settings = settings
        self.store = store
        self.engine = store.engine
        self.audit = audit
        self._pool = ThreadPoolExecutor(max_workers=settings.federation_retrieve_workers,
                                        thread_name_prefix="retrieve")
        self._jobs: OrderedDict[str, RetrieveJob] = OrderedDict()
        self._lock = threading.Lock()

    def start(self, source: Source, study_uid: str, requester: Actor,
              expected: int | None = None,
              on_done: Callable[[RetrieveJob], None] | None = None) -> RetrieveJob:
        """A job for the study (the running one if the same study from the same source is
        under way). ``on_done`` is called with the job when it is over (in the job's thread).
        The caller has checked that the requester may use ``source``."""
        remote.check_study_uid(study_uid)
        if source.kind is SourceKind.ARCHIVE:
            raise ValueError("the archive is no source to retrieve from")
        with self._lock:
            for job in self._jobs.values():
                if (job.source.id == source.id and job.study_uid == study_uid
                        and job.state in (JobState.QUEUED, JobState.RUNNING)):
                    if on_done is not None:
                        job.callbacks.append(on_done)
                    return job
            job = RetrieveJob(secrets.token_hex(8), source, study_uid, requester, expected)
            if on_done is not None:
                job.callbacks.append(on_done)
            self._jobs[job.id] = job
            self._forget_old()
        self._pool.submit(self._run, job)
        return job

    def job(self, job_id: str) -> RetrieveJob | None:
        with self._lock:
            return self._jobs.get(job_id)

    def _forget_old(self) -> None:
        finished = [k for k, j in self._jobs.items() if j.done.is_set()]
        for key in finished[:max(0, len(finished) - KEEP_FINISHED)]:
            del self._jobs[key]

    def _run(self, job: RetrieveJob) -> None:
        job.state = JobState.RUNNING
        job.started = time.monotonic()
        detail: dict[str, object] = {"source": job.source.id, "what": "retrieve"}
        try:
            if job.source.node is not None:
                self._move(job)
            else:
                self._wado(job)
            job.in_archive = in_archive(self.engine, job.study_uid)
            job.state = JobState.DONE if job.in_archive else JobState.FAILED
            if not job.in_archive:
                job.error = "nothing of the study arrived in the archive"
        except remote.RemotePacsError as exc:
            job.state, job.error = JobState.FAILED, exc.message
        except Exception as exc:  # a bug: the job fails, its page says so, the log has it
            log.exception("retrieve of %s from %s failed", job.study_uid, job.source.id)
            job.state, job.error = JobState.FAILED, f"failed ({type(exc).__name__})"
        finally:
            job.ended = time.monotonic()
            ok = job.state is JobState.DONE and job.failed == 0
            detail.update({"completed": job.completed, "failed": job.failed,
                           "bytes": job.received_bytes, "seconds": round(
                               job.ended - job.started, 3)})
            if job.error:
                detail["error"] = job.error
            self.audit.submit(job.requester, AuditAction.FETCH,
                              AuditOutcome.SUCCESS if ok else AuditOutcome.FAILURE,
                              study_uid=job.study_uid, owner=job.source.institution,
                              detail=detail)
            with self._lock:
                job.done.set()
                callbacks, job.callbacks = job.callbacks, []
            for callback in callbacks:
                try:
                    callback(job)
                except Exception:
                    log.exception("after the retrieve of %s", job.study_uid)

    def _move(self, job: RetrieveJob) -> None:
        node = job.source.node
        assert node is not None
        watching = threading.Event()

        def reported(remaining: int, completed: int, failed: int, warning: int) -> None:
            watching.set()
            job.expected = remaining + completed + failed + warning
            job.completed, job.failed = completed + warning, failed

        def watch_index() -> None:  # a PACS that sends no pending responses
            while not job.done.is_set() and not watching.is_set():
                job.completed = max(job.completed, held_instances(self.engine, job.study_uid))
                time.sleep(0.5)

        threading.Thread(target=watch_index, daemon=True, name="retrieve-watch").start()
        result = remote.retrieve_remote_study(self.settings, node, job.study_uid, reported)
        job.completed, job.failed = result.completed + result.warning, result.failed
        job.expected = job.expected or (result.completed + result.failed + result.warning)

    def _wado(self, job: RetrieveJob) -> None:
        peer = job.source.web
        assert peer is not None

        def reported(completed: int, failed: int, received: int) -> None:
            job.completed, job.failed, job.received_bytes = completed, failed, received

        result = remote_web.retrieve_web_study(peer, job.study_uid, self.store,
                                               actor=job.requester, progress=reported)
        job.completed, job.failed = result.completed, result.failed
        job.received_bytes = result.received_bytes

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
