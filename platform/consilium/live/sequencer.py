"""The sequencer: every change of a session gets the next sequence number of that session, in
the database, in the transaction that writes it.

``UPDATE consilium_session SET last_seq = last_seq + 1 ... WHERE id = :id AND <rule> RETURNING
last_seq`` then ``INSERT`` the change with that seq, one transaction. The row lock the UPDATE
takes (PostgreSQL) or the database's single writer (SQLite) serializes the changes of a
session across every web process, so the committed changes of a session are always a prefix
of its sequence: no holes, in every process and after a restart. (Redis INCR was the other
candidate: its numbers are handed out before the database commits, so a change could be seen
with seq 7 while 6 was still being written, or never written by a process that died; a
snapshot would then have to guess.)

The ``<rule>`` makes the check and the numbering one atomic step: who may make which change in
which status of the session (:data:`RULES`, as data). A change whose rule fails is refused
before it gets a number (``append`` returns None), so a former presenter's late view change,
or a second ``session.ended``, leaves no trace. A few kinds also set the columns the rules read
(status, presenter) in the same UPDATE.

Every :data:`SNAPSHOT_EVERY` changes the folded state is written into the session row, so that
loading a session reads at most that many changes.
"""

from __future__ import annotations

import contextlib
import json
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, and_, delete, exists, insert, or_, select, update
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import col

from consilium.live import mark_store
from consilium.live.events import ChangeKind
from consilium.live.models import (
    ConsiliumSession,
    SessionChange,
    SessionConnection,
    SessionStatus,
)
from consilium.live.state import State, apply, empty_state, fold

SNAPSHOT_EVERY = 200

_OPEN = frozenset({SessionStatus.OPEN})
_NOT_ENDED = frozenset({SessionStatus.SCHEDULED, SessionStatus.OPEN})
_STARTED = frozenset({SessionStatus.OPEN, SessionStatus.ENDED})


@dataclass(frozen=True)
class Rule:
    """Who may make a change of this kind, and in which statuses of the session."""

    statuses: frozenset[SessionStatus]
    who: str = "member"  # member | presenter | chair | presenter-or-chair


RULES: dict[ChangeKind, Rule] = {
    ChangeKind.SESSION_SCHEDULED: Rule(frozenset({SessionStatus.SCHEDULED}), "chair"),
    ChangeKind.SESSION_OPENED: Rule(frozenset({SessionStatus.SCHEDULED}), "chair"),
    ChangeKind.SESSION_ENDED: Rule(_NOT_ENDED, "chair"),
    ChangeKind.MEMBER_INVITED: Rule(_NOT_ENDED, "chair"),
    ChangeKind.MEMBER_UNINVITED: Rule(_NOT_ENDED, "chair"),
    ChangeKind.MEMBER_JOINED: Rule(_NOT_ENDED),
    ChangeKind.MEMBER_LEFT: Rule(_NOT_ENDED),
    ChangeKind.CONTROL_REQUESTED: Rule(_OPEN),
    ChangeKind.CONTROL_WITHDRAWN: Rule(_OPEN),
    ChangeKind.CONTROL_GRANTED: Rule(_OPEN, "presenter-or-chair"),
    ChangeKind.HAND_RAISED: Rule(_OPEN),
    ChangeKind.HAND_LOWERED: Rule(_OPEN),
    ChangeKind.CHAT_MESSAGE: Rule(_OPEN),
    ChangeKind.VIEW_STACK: Rule(_OPEN, "presenter"),
    ChangeKind.VIEW_MPR: Rule(_OPEN, "presenter"),
    ChangeKind.VIEW_VOLUME: Rule(_OPEN, "presenter"),
    ChangeKind.POINTER: Rule(_OPEN),
    # the protocol may be finished after the session ended; :mod:`.protocol` checks who
    ChangeKind.PROTOCOL_PEN: Rule(_STARTED, "chair"),
    ChangeKind.PROTOCOL_SAVED: Rule(_STARTED),
    ChangeKind.PROTOCOL_DRAFT: Rule(_STARTED),
    ChangeKind.PROTOCOL_SIGNING: Rule(_STARTED, "chair"),
    ChangeKind.PROTOCOL_SIGNED: Rule(_STARTED),
    ChangeKind.PROTOCOL_REOPENED: Rule(_STARTED, "chair"),
    ChangeKind.PROTOCOL_CLOSED: Rule(_STARTED, "chair"),
    ChangeKind.MARK_PUT: Rule(_OPEN),  # and the mark is new or the actor's own (mark_store)
    ChangeKind.MARK_DELETED: Rule(_OPEN),
    ChangeKind.MARK_DRAWING: Rule(_OPEN),
}


def utcnow() -> datetime:
    return datetime.now(UTC)


def stamp(at: datetime) -> str:
    """The one text form of a change's time (what the browser and the fold see)."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@dataclass(frozen=True)
class Draft:
    """A change before it has its seq."""

    session_id: str
    kind: ChangeKind
    actor: str
    payload: dict[str, Any]
    at: datetime = field(default_factory=utcnow)

    @property
    def durable(self) -> bool:
        return not self.kind.coalesced


@dataclass(frozen=True)
class Change:
    """A sequenced, committed change."""

    session_id: str
    seq: int
    at: str
    actor: str
    kind: str
    payload: dict[str, Any]
    durable: bool = True

    def wire(self) -> dict[str, Any]:
        """As ``session:change`` carries it (and as :func:`.state.apply` takes it)."""
        return {"session_id": self.session_id, "seq": self.seq, "at": self.at,
                "actor": self.actor, "kind": self.kind, "payload": self.payload}

    @classmethod
    def of_wire(cls, data: dict[str, Any]) -> Change:
        kind = str(data["kind"])
        durable = kind not in {k.value for k in ChangeKind if k.coalesced}
        return cls(str(data["session_id"]), int(data["seq"]), str(data["at"]),
                   str(data["actor"]), kind, dict(data["payload"]), durable)


def _who(rule: Rule, actor: str) -> list[ColumnElement[bool]]:
    chair = col(ConsiliumSession.chair_subject) == actor
    presenter = col(ConsiliumSession.presenter_subject) == actor
    if rule.who == "chair":
        return [chair]
    if rule.who == "presenter":
        return [presenter]
    if rule.who == "presenter-or-chair":
        return [or_(chair, presenter)]
    return []


def _sets(draft: Draft) -> dict[str, Any]:
    """Columns of the session row a change sets along with its seq."""
    if draft.kind is ChangeKind.SESSION_OPENED:
        return {"status": SessionStatus.OPEN.value, "opened_at": draft.at,
                "presenter_subject": col(ConsiliumSession.chair_subject)}
    if draft.kind is ChangeKind.SESSION_ENDED:
        return {"status": SessionStatus.ENDED.value, "ended_at": draft.at}
    if draft.kind is ChangeKind.CONTROL_GRANTED:
        return {"presenter_subject": str(draft.payload["subject"])}
    return {}


def append(db: Connection, draft: Draft, process_id: str = "") -> Change | None:
    """Number and write one change in the caller's transaction (the caller commits); None when
    the rule of its kind refuses it. ``process_id`` is recorded with a ``member.joined``
    connection (who holds it)."""
    rule = RULES[draft.kind]
    payload = mark_store.payload_before(db, draft)
    if payload is None:
        return None
    conditions: list[ColumnElement[bool]] = [
        col(ConsiliumSession.id) == draft.session_id,
        col(ConsiliumSession.status).in_([s.value for s in rule.statuses]),
        *_who(rule, draft.actor)]
    connection = str(draft.payload.get("connection", ""))
    if draft.kind is ChangeKind.MEMBER_LEFT:  # only a connection that is still there leaves
        conditions.append(exists().where(
            col(SessionConnection.connection_id) == connection,
            col(SessionConnection.session_id) == draft.session_id))
    stmt = (update(ConsiliumSession).where(and_(*conditions))
            .values(last_seq=col(ConsiliumSession.last_seq) + 1, **_sets(draft))
            .returning(col(ConsiliumSession.last_seq)))
    seq = db.execute(stmt).scalar_one_or_none()
    if seq is None:
        return None
    if draft.kind is ChangeKind.MEMBER_JOINED:
        db.execute(insert(SessionConnection).values(
            session_id=draft.session_id, connection_id=connection,
            subject=str(draft.payload["subject"]), process_id=process_id, joined_at=draft.at))
    elif draft.kind is ChangeKind.MEMBER_LEFT:
        db.execute(delete(SessionConnection).where(
            col(SessionConnection.connection_id) == connection))
    elif draft.kind is ChangeKind.SESSION_ENDED:  # nobody is online in an ended session
        db.execute(delete(SessionConnection).where(
            col(SessionConnection.session_id) == draft.session_id))
    change = Change(draft.session_id, int(seq), stamp(draft.at), draft.actor, draft.kind.value,
                    payload, draft.durable)
    db.execute(insert(SessionChange).values(
        session_id=draft.session_id, seq=change.seq, at=draft.at, actor=draft.actor,
        kind=change.kind, payload=json.dumps(payload, ensure_ascii=False,
                                             separators=(",", ":")),
        durable=change.durable))
    mark_store.store_after(db, draft, change)
    if change.seq % SNAPSHOT_EVERY == 0:
        _compact(db, draft.session_id)
    return change


def _compact(db: Connection, session_id: str) -> None:
    """Fold the changes since the last snapshot into a new one (same transaction)."""
    state, seq = read_state(db, session_id)
    db.execute(update(ConsiliumSession).where(col(ConsiliumSession.id) == session_id)
               .values(snapshot=json.dumps(state, ensure_ascii=False, separators=(",", ":")),
                       snapshot_seq=seq))


def _row_change(row: Any) -> dict[str, Any]:
    at = row.at if row.at.tzinfo else row.at.replace(tzinfo=UTC)
    return {"session_id": row.session_id, "seq": int(row.seq), "at": stamp(at),
            "actor": row.actor, "kind": row.kind, "payload": json.loads(row.payload)}


def read_state(db: Connection, session_id: str) -> tuple[State, int]:
    """The session's current state and seq from the snapshot and the changes after it."""
    row = db.execute(select(col(ConsiliumSession.snapshot), col(ConsiliumSession.snapshot_seq))
                     .where(col(ConsiliumSession.id) == session_id)).first()
    if row is None:
        raise LookupError(session_id)
    state: State = json.loads(row[0]) if row[0] else empty_state(session_id)
    fold(state, read_changes(db, session_id, after=int(row[1])))
    return state, int(state["seq"])


def read_changes(db: Connection, session_id: str, after: int, upto: int | None = None,
                 limit: int | None = None) -> list[dict[str, Any]]:
    """The session's changes with ``after < seq <= upto``, in seq order, as on the wire."""
    table = SessionChange.__table__.c  # type: ignore[attr-defined]
    stmt = select(table.session_id, table.seq, table.at, table.actor, table.kind,
                  table.payload).where(table.session_id == session_id, table.seq > after)
    if upto is not None:
        stmt = stmt.where(table.seq <= upto)
    stmt = stmt.order_by(table.seq)
    if limit is not None:
        stmt = stmt.limit(limit)
    return [_row_change(r) for r in db.execute(stmt)]


def load_state(engine: Engine, session_id: str) -> tuple[State, int]:
    with engine.begin() as db:
        return read_state(db, session_id)


def load_changes(engine: Engine, session_id: str, after: int, upto: int | None = None,
                 limit: int | None = None) -> list[dict[str, Any]]:
    with engine.begin() as db:
        return read_changes(db, session_id, after, upto, limit)


def last_seq_of(engine: Engine, session_id: str) -> int:
    """The seq of the session's newest committed change (0 for an unknown session)."""
    with engine.connect() as db:
        found = db.execute(select(col(ConsiliumSession.last_seq)).where(
            col(ConsiliumSession.id) == session_id)).scalar_one_or_none()
    return int(found or 0)


def replay(changes: list[dict[str, Any]], session_id: str) -> State:
    """The state a list of changes from the start makes (tests, replay)."""
    state = empty_state(session_id)
    for change in changes:
        apply(state, change)
    return state


# --------------------------------------------------------------------------- the writer thread


Work = Callable[[Connection], list[Change | None]]


@dataclass(eq=False)
class _Job:
    work: Work
    done: Callable[[list[Change | None] | BaseException], None]
    durable: bool = True


class ChangeWriter:
    """One thread per process writes the live changes, in the order they were submitted; what
    queues up while a transaction commits goes into the next one (group commit), so a busy
    second costs a few commits, not one per change. The event loop never writes."""

    def __init__(self, engine: Engine, process_id: str) -> None:
        self.engine = engine
        self.process_id = process_id
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._db: Connection | None = None  # used by the writer thread only
        self._relaxed = False
        self.transactions = 0

    def submit(self, work: Work, done: Callable[[list[Change | None] | BaseException], None],
               durable: bool = True) -> None:
        """Queue ``work``; ``done`` gets its result in the writer thread. A transaction of
        only coalesced changes (``durable=False``) is committed without waiting for the disk
        (see :meth:`_connection`)."""
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="live-writer",
                                                daemon=True)
                self._thread.start()
        self._queue.put(_Job(work, done, durable))

    def drafts(self, drafts: list[Draft]) -> Work:
        def work(db: Connection) -> list[Change | None]:
            return [append(db, d, self.process_id) for d in drafts]
        return work

    def close(self) -> None:
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(None)
            thread.join(10)

    def _connection(self, relaxed: bool) -> Connection:
        """The writer's own connection, kept open (no pool checkout per flush), set to commit
        without waiting for the disk for transactions of only view changes and pointers
        (SQLite: synchronous=NORMAL, switched only when the kind of transaction changes;
        PostgreSQL: synchronous_commit off, per transaction). On the shared test machine a
        transaction of one view change took 2.1-4.1 ms (median; p90 3.2-9.2 ms) with the
        fsync, 1.2-1.5 ms (p90 2.0-2.4 ms) without, and it lies between a presenter's change
        and everyone's view 30 times a second; with 100 participants the loop's sends and this
        thread share the interpreter, and every statement less counts. Nothing is lost by a
        crash of the web process; a power loss or database crash can lose the last of them (a
        suffix: a later durable commit makes every earlier one durable), and a client that had
        them gets a snapshot when it resumes (see :mod:`.namespace`)."""
        if self._db is None or self._db.closed or self._db.invalidated:
            self._db, self._relaxed = self.engine.connect(), False
        db = self._db
        if db.dialect.name == "sqlite" and relaxed != self._relaxed:
            db.exec_driver_sql(f"PRAGMA synchronous={'NORMAL' if relaxed else 'FULL'}")
            db.commit()
            self._relaxed = relaxed
        return db

    def _drop_connection(self) -> None:
        if self._db is not None:
            with contextlib.suppress(Exception):
                self._db.close()
        self._db = None

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                self._drop_connection()
                return
            jobs = [first]
            while len(jobs) < 64:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._queue.put(None)
                    break
                jobs.append(more)
            self._write(jobs)

    def _write(self, jobs: list[_Job]) -> None:
        relaxed = not any(job.durable for job in jobs)
        try:
            db = self._connection(relaxed)
            with db.begin():
                if relaxed and db.dialect.name == "postgresql":
                    db.exec_driver_sql("SET LOCAL synchronous_commit = off")
                results = [job.work(db) for job in jobs]
            self.transactions += 1
        except Exception as exc:  # one bad job must not lose the others: alone, each
            self._drop_connection()  # and a connection that failed is not trusted again
            if len(jobs) > 1:
                for job in jobs:
                    self._write([job])
                return
            jobs[0].done(exc)
            return
        for job, result in zip(jobs, results, strict=True):
            job.done(result)
