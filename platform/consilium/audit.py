"""The audit trail: an append-only record of every access to patient data, every login and
failed login, every grant (in the spirit of IHE ATNA). Every domain writes here; this module
imports no domain.

Granularity, so that the record answers "who opened this patient's images, when, from where"
without drowning it: one event per request for queries, whole retrievals and exports; views
(thumbnails, frames and rendered images, metadata) are coalesced per actor and study within
:data:`VIEW_COALESCE_SECONDS`, keeping the most telling purpose (:class:`Purpose`): a view that
tells more than what was recorded in the window (metadata after thumbnails, a whole retrieve
after frames) is recorded, a lesser one is not. That one rule is applied here, whoever records.

Patients are named from the archive's index only where the actor was given the data: an event
about a study of the actor's own institution, or one whose ``owner`` a caller that checked the
policy names (:mod:`consilium.archive.access`). A refusal, or a search that found nothing,
names no patient: the row shows what was asked, never what exists elsewhere.

Writing: one writer thread per process drains a queue, in order, several events per
transaction. :meth:`AuditTrail.record` waits until its event is written (the DIMSE handlers,
logins and grants, which must not answer before their event is on record);
:meth:`AuditTrail.submit` only queues it (the web's views and searches: an answer never waits on
an audit commit, and the event loop never writes). :meth:`AuditTrail.flush` waits for what was
queued before it (tests; readers of the trail, so that a search sees what was just done);
:meth:`AuditTrail.close` drains and stops the writer (service shut-down; also at interpreter
exit, which SIGTERM reaches through uvicorn's and the DIMSE workers' handlers).
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import queue
import socket
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import IntEnum, StrEnum
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from sqlalchemy import Engine, insert
from sqlmodel import Field, SQLModel

log = logging.getLogger(__name__)

VIEW_COALESCE_SECONDS = 600
WRITE_BATCH = 500  # events per transaction at most, when the writer has fallen behind


class AuditAction(StrEnum):
    LOGIN = "login"
    LOGIN_FAILED = "login-failed"
    LOGOUT = "logout"
    QUERY = "query"  # a search that returned patient data (QIDO-RS, C-FIND)
    VIEW = "view"  # images or metadata opened
    RETRIEVE = "retrieve"  # whole objects sent out (WADO-RS retrieve, C-GET, C-MOVE)
    FETCH = "fetch"  # a study brought in from a hospital's PACS on a user's request (C-MOVE SCU)
    EXPORT = "export"  # media, PDF, CSV leaving the system
    STORE = "store"  # instances received (C-STORE, STOW-RS, import)
    SCHEDULE = "schedule"  # a scheduled procedure (worklist item) booked, edited, cancelled
    GRANT = "grant"
    REVOKE = "revoke"
    DENIED = "denied"  # an access the policy refused, or of something that does not exist


class AuditOutcome(StrEnum):
    SUCCESS = "success"
    FAILURE = "failure"
    DENIED = "denied"


class Purpose(IntEnum):
    """Why patient data of a study is read, from the least to the most telling."""

    THUMBNAIL = 1
    FRAME = 2  # pixel data: frames, bulk data, rendered images, MPR and 3-D frames
    METADATA = 3  # every attribute of the instances
    RETRIEVE = 4  # whole objects leave (WADO-RS retrieve, C-GET, C-MOVE)
    EXPORT = 5  # a document or model made of the data leaves (PDF, STL, media)

    @property
    def action(self) -> AuditAction:
        if self is Purpose.RETRIEVE:
            return AuditAction.RETRIEVE
        if self is Purpose.EXPORT:
            return AuditAction.EXPORT
        return AuditAction.VIEW

    @property
    def label(self) -> str:
        return self.name.lower()


# the purpose an event without one is counted as, for coalescing
_DEFAULT_PURPOSE = {AuditAction.VIEW: Purpose.FRAME, AuditAction.RETRIEVE: Purpose.RETRIEVE,
                    AuditAction.EXPORT: Purpose.EXPORT}


class AuditEvent(SQLModel, table=True):
    __tablename__ = "audit_event"

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(index=True)
    action: str = Field(max_length=32, index=True)
    outcome: str = Field(max_length=16)
    actor: str = Field(max_length=256, index=True, description="user subject or AE title")
    actor_name: str = Field(default="", max_length=256)
    actor_institution: str = Field(default="", max_length=64, index=True)
    source: str = Field(default="", max_length=128, description="IP address or AE@host")
    channel: str = Field(default="", max_length=16, description="web, api, dimse, socket")
    patient_id: str = Field(default="", max_length=64, index=True)
    patient_name: str = Field(default="", max_length=324)
    study_uid: str = Field(default="", max_length=64, index=True)
    data_institution: str = Field(
        default="", max_length=64, index=True,
        description="the institution that owns the study or patient the event is about; the "
        "audit search is scoped by it (a PatientID alone names no one: two hospitals can "
        "give the same one to different people)")
    detail: str = Field(default="", max_length=4000)


@dataclass(frozen=True)
class Actor:
    subject: str
    name: str = ""
    institution: str = ""
    source: str = ""
    channel: str = "web"


class ViewCoalescer:
    """The one coalescing rule: per (actor, study), an access is recorded when nothing was
    recorded within ``window`` seconds, or when it tells more than everything recorded since;
    retrievals and exports are always recorded (each is data leaving). Memory is bounded:
    expired entries go when the table grows past ``max_entries``."""

    def __init__(self, window: float = VIEW_COALESCE_SECONDS, max_entries: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.window = window
        self.max_entries = max_entries
        self.clock = clock
        self._recent: dict[tuple[str, str], tuple[float, Purpose]] = {}
        self._lock = threading.Lock()

    def admit(self, subject: str, study_uid: str, purpose: Purpose) -> bool:
        key = (subject, study_uid)
        now = self.clock()
        with self._lock:
            last = self._recent.get(key)
            fresh = last is not None and now - last[0] < self.window
            if fresh and last is not None and purpose <= last[1] and purpose < Purpose.RETRIEVE:
                return False
            best = max(purpose, last[1]) if fresh and last is not None else purpose
            if len(self._recent) >= self.max_entries and key not in self._recent:
                self._forget_expired(now)
            self._recent[key] = (now, best)
            return True

    def _forget_expired(self, now: float) -> None:
        expired = [k for k, (at, _) in self._recent.items() if now - at >= self.window]
        for k in expired:
            del self._recent[k]
        if len(self._recent) >= self.max_entries:  # all fresh: forget the oldest half
            for k, _ in sorted(self._recent.items(), key=lambda kv: kv[1][0])[
                    : self.max_entries // 2]:
                del self._recent[k]


@dataclass
class _Pending:
    """One event on its way to the database (``row`` is None for a flush or stop marker)."""

    row: dict[str, Any] | None
    owner: str = ""  # whose study it is, if a policy check established it
    done: threading.Event | None = None
    error: BaseException | None = None
    stop: bool = False


_live_trails: weakref.WeakSet[AuditTrail] = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    for trail in list(_live_trails):
        trail.close()


@dataclass(eq=False)
class AuditTrail:
    """Writes audit events; optionally mirrors them to a syslog collector as DICOM audit
    messages (PS3.15 A.5, RFC 5424 over UDP)."""

    engine: Engine
    syslog_host: str = ""
    syslog_port: int = 514
    # (study UID, institution) -> (patient ID, patient name) if the study is that
    # institution's; given by the service (this module knows no domain)
    patient_of_study: Callable[[str, str], tuple[str, str] | None] | None = None
    # study UID -> the institution that owns it: whose data an event is about (the audit
    # search is scoped by it); looked up by the writer thread, not by the caller
    institution_of_study: Callable[[str], str | None] | None = None
    views: ViewCoalescer = field(default_factory=ViewCoalescer)
    _queue: queue.SimpleQueue[_Pending] = field(default_factory=queue.SimpleQueue, init=False)
    _thread: threading.Thread | None = field(default=None, init=False)
    _pid: int = field(default=0, init=False)
    _closed: bool = field(default=False, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)

    def record(
        self,
        actor: Actor,
        action: AuditAction,
        outcome: AuditOutcome = AuditOutcome.SUCCESS,
        *,
        study_uid: str = "",
        patient_id: str = "",
        patient_name: str = "",
        detail: dict[str, Any] | None = None,
        purpose: Purpose | None = None,
        owner: str = "",
        data_institution: str = "",
    ) -> None:
        """Record an event and return once it is written (raises if it could not be).

        ``data_institution`` names the owner of the data when the event has a patient but no
        study (a case attachment, say); with a study, its owner is looked up (or is ``owner``,
        where the policy check established it)."""
        pending = self._admit(actor, action, outcome, study_uid, patient_id, patient_name,
                              detail, purpose, owner, data_institution)
        if pending is None:
            return
        pending.done = threading.Event()
        if not self._put(pending):
            self._write([pending])
        else:
            pending.done.wait()
        if pending.error is not None:
            raise pending.error

    def submit(
        self,
        actor: Actor,
        action: AuditAction,
        outcome: AuditOutcome = AuditOutcome.SUCCESS,
        *,
        study_uid: str = "",
        patient_id: str = "",
        patient_name: str = "",
        detail: dict[str, Any] | None = None,
        purpose: Purpose | None = None,
        owner: str = "",
        data_institution: str = "",
    ) -> None:
        """Queue an event for the writer thread and return at once (a failure is logged)."""
        pending = self._admit(actor, action, outcome, study_uid, patient_id, patient_name,
                              detail, purpose, owner, data_institution)
        if pending is not None and not self._put(pending):
            self._write([pending])

    def flush(self, timeout: float | None = 30.0) -> bool:
        """Wait until every event queued before this call is written; False on time-out."""
        marker = _Pending(None, done=threading.Event())
        if not self._put(marker, start=False):
            return True
        return marker.done is not None and marker.done.wait(timeout)

    def close(self, timeout: float | None = 30.0) -> None:
        """Write what is queued and stop the writer; later events are written directly."""
        with self._lock:
            thread, self._closed = self._thread, True
            self._thread = None
        if thread is None or not thread.is_alive() or self._pid != os.getpid():
            return
        self._queue.put(_Pending(None, stop=True))
        thread.join(timeout)
        if thread.is_alive():
            log.error("the audit writer did not drain within %s s", timeout)

    # -- internals ------------------------------------------------------------------------

    def _admit(self, actor: Actor, action: AuditAction, outcome: AuditOutcome, study_uid: str,
               patient_id: str, patient_name: str, detail: dict[str, Any] | None,
               purpose: Purpose | None, owner: str, data_institution: str = ""
               ) -> _Pending | None:
        """The row of an event, or None when the coalescing rule drops it."""
        if study_uid and outcome is AuditOutcome.SUCCESS and action in _DEFAULT_PURPOSE:
            weight = purpose if purpose is not None else _DEFAULT_PURPOSE[action]
            if not self.views.admit(actor.subject, study_uid, weight):
                return None
        row = dict(
            at=datetime.now(UTC),
            action=action.value,
            outcome=outcome.value,
            actor=actor.subject[:256],
            actor_name=actor.name[:256],
            actor_institution=actor.institution[:64],
            source=actor.source[:128],
            channel=actor.channel[:16],
            patient_id=patient_id[:64],
            patient_name=patient_name[:324],
            study_uid=study_uid[:64],
            data_institution=(data_institution or owner)[:64],
            detail=json.dumps(detail, ensure_ascii=False)[:4000] if detail else "",
        )
        # a patient is named only where the actor was given the data: never on a refusal
        named_by = (owner or actor.institution) if outcome is AuditOutcome.SUCCESS else ""
        return _Pending(row, owner=named_by if study_uid and not patient_id else "")

    def _put(self, pending: _Pending, start: bool = True) -> bool:
        """Queue for the writer thread (started on first use, again after a fork); False once
        the trail is closed."""
        with self._lock:
            if self._closed:
                return False
            if self._thread is None or self._pid != os.getpid():
                if not start:
                    return False
                self._pid = os.getpid()
                self._queue = queue.SimpleQueue()
                self._thread = threading.Thread(target=self._drain, name="audit-writer",
                                                daemon=True)
                self._thread.start()
                _live_trails.add(self)
            self._queue.put(pending)
            return True

    def _drain(self) -> None:
        source = self._queue
        while True:
            batch = [source.get()]
            while len(batch) < WRITE_BATCH:
                try:
                    batch.append(source.get_nowait())
                except queue.Empty:
                    break
            try:
                rows = [p for p in batch if p.row is not None]
                if rows:
                    self._write(rows)
            except Exception as exc:  # a bug here must not stop the writer or hang a waiter
                log.exception("audit writer failed")
                for pending in batch:
                    pending.error = pending.error or exc
            for pending in batch:
                if pending.done is not None:
                    pending.done.set()
            if any(p.stop for p in batch):
                return

    def _write(self, batch: list[_Pending]) -> None:
        """Insert the rows of ``batch`` in one transaction (one by one if that fails, so that
        one bad row loses no other), then mirror them to syslog and wake their waiters."""
        for pending in batch:
            self._name_patient(pending)
            self._name_owner(pending)
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(AuditEvent), [p.row for p in batch if p.row is not None])
        except Exception as exc:
            if len(batch) == 1:
                batch[0].error = exc
                log.error("audit event not written: %s: %s", exc, batch[0].row)
            else:
                for pending in batch:
                    self._write([pending])
                return
        for pending in batch:
            if self.syslog_host and pending.error is None and pending.row is not None:
                self._emit_syslog(pending.row)
            if pending.done is not None:
                pending.done.set()

    def _name_patient(self, pending: _Pending) -> None:
        row = pending.row
        if row is None or not pending.owner or self.patient_of_study is None:
            return
        try:
            found = self.patient_of_study(row["study_uid"], pending.owner)
        except Exception as exc:  # naming is a convenience; the event is what counts
            log.warning("audit: patient of study %s not looked up: %s", row["study_uid"], exc)
            return
        pending.owner = ""
        if found is not None:
            row["patient_id"], row["patient_name"] = found[0][:64], found[1][:324]

    def _name_owner(self, pending: _Pending) -> None:
        """Whose data the event is about, for rows about a study that do not say."""
        row = pending.row
        if (row is None or row["data_institution"] or not row["study_uid"]
                or self.institution_of_study is None):
            return
        try:
            row["data_institution"] = (self.institution_of_study(row["study_uid"]) or "")[:64]
        except Exception as exc:  # the event is what counts
            log.warning("audit: owner of study %s not looked up: %s", row["study_uid"], exc)

    def _emit_syslog(self, row: dict[str, Any]) -> None:
        message = dicom_audit_message(row)
        # RFC 5424: <PRI>VERSION TIMESTAMP HOST APP PROCID MSGID SD MSG; facility 10 (authpriv)
        header = f"<85>1 {row['at'].isoformat()} {socket.gethostname()} consilium - IHE+RFC-3881 - "
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                sock.sendto((header + message).encode(), (self.syslog_host, self.syslog_port))
        except OSError as exc:  # auditing to syslog must never break the action audited
            log.warning("audit syslog to %s failed: %s", self.syslog_host, exc)


_EVENT_IDS = {  # (EventID code, display) from DCM (PS3.16 CID 400)
    "login": ("110114", "User Authentication"),
    "login-failed": ("110114", "User Authentication"),
    "logout": ("110114", "User Authentication"),
    "query": ("110112", "Query"),
    "view": ("110110", "Patient Record"),
    "retrieve": ("110106", "Export"),
    "fetch": ("110107", "Import"),
    "export": ("110106", "Export"),
    "store": ("110107", "Import"),
    "grant": ("110113", "Security Alert"),
    "revoke": ("110113", "Security Alert"),
    "denied": ("110113", "Security Alert"),
}


def dicom_audit_message(row: dict[str, Any]) -> str:
    """A DICOM audit message (PS3.15 A.5.1) for one event, as XML text."""
    code, display = _EVENT_IDS.get(row["action"], ("110110", "Patient Record"))
    outcome = {"success": "0", "failure": "8", "denied": "4"}.get(row["outcome"], "8")
    parts = [
        "<AuditMessage>",
        "<EventIdentification EventActionCode=\"R\" "
        f"EventDateTime={quoteattr(row['at'].isoformat())} EventOutcomeIndicator=\"{outcome}\">",
        f"<EventID csd-code=\"{code}\" codeSystemName=\"DCM\" originalText=\"{display}\"/>",
        "</EventIdentification>",
        f"<ActiveParticipant UserID={quoteattr(row['actor'])} "
        f"UserName={quoteattr(row['actor_name'])} UserIsRequestor=\"true\" "
        f"NetworkAccessPointID={quoteattr(row['source'])} NetworkAccessPointTypeCode=\"2\"/>",
        "<AuditSourceIdentification AuditSourceID=\"consilium\"/>",
    ]
    if row["patient_id"]:
        parts.append(
            f"<ParticipantObjectIdentification ParticipantObjectID={quoteattr(row['patient_id'])}"
            " ParticipantObjectTypeCode=\"1\" ParticipantObjectTypeCodeRole=\"1\">"
            "<ParticipantObjectIDTypeCode csd-code=\"2\" originalText=\"Patient Number\"/>"
            f"<ParticipantObjectName>{escape(row['patient_name'])}</ParticipantObjectName>"
            "</ParticipantObjectIdentification>"
        )
    if row["study_uid"]:
        parts.append(
            f"<ParticipantObjectIdentification ParticipantObjectID={quoteattr(row['study_uid'])}"
            " ParticipantObjectTypeCode=\"2\" ParticipantObjectTypeCodeRole=\"3\">"
            "<ParticipantObjectIDTypeCode csd-code=\"110180\" codeSystemName=\"DCM\""
            " originalText=\"Study Instance UID\"/></ParticipantObjectIdentification>"
        )
    parts.append("</AuditMessage>")
    return "".join(parts)
