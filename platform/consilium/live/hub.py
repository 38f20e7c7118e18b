"""The live sessions of one web process: writing changes, delivering them in order, the state
each process keeps of the sessions its participants are in.

Writing
    Durable changes (membership, control, hand, chat, lifecycle) are written before anyone
    hears of them: :meth:`LiveHub.record` waits for the commit. High-frequency ones (view
    changes, the pointer) are offered to the coalescer, which keeps only the latest per session
    and kind (per participant for the pointer) and writes what is pending at most once per
    ``coalesce`` interval, in one transaction (the first after a quiet spell goes at once). A
    durable change takes the pending coalesced ones of its session with it, before it, so the
    record keeps the order in which the server took them. One writer thread writes them all
    (:class:`.sequencer.ChangeWriter`).

Delivering
    A committed change goes to this process's :class:`Feed` of its session at once, and to the
    other web processes through the bus (Redis publish/subscribe, when ``live.redis_url`` is
    set). Publishing order between processes is not commit order, so each feed takes changes
    strictly in seq order: a change that arrives early waits in the feed; a gap not filled by
    the bus within :data:`GAP_WAIT` is read from the database (committed changes are a prefix of
    the sequence, see :mod:`.sequencer`). The feed folds each change into its state and emits it
    to the session's room of this process, one change after the other. So every participant,
    on whichever process, gets every change exactly once, in seq order.

Joining
    The feed's state is the snapshot a joiner gets: the join enters the room before it reads the
    state, so every change after the snapshot's seq reaches the joiner (some may come before the
    join's answer: the client keeps those with a higher seq).

Presence
    Each open connection of a participant is a row with the process that holds it. A process
    that stops with connections open (a crash, a restart) leaves them behind: every process
    sweeps, at its start and every :data:`SWEEP_SECONDS`, the connections of processes that are
    not alive (with Redis: whose heartbeat key expired; without: every other process id, there
    being one process) and writes their ``member.left``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import anyio
from sqlalchemy import select
from sqlmodel import Session, col

from consilium.archive import catalog
from consilium.archive.access import Reader
from consilium.live.events import (
    EVT_CHANGE,
    EVT_CLOSED,
    EVT_INVITED,
    NAMESPACE,
    PER_ACTOR_KINDS,
    ChangeKind,
)
from consilium.live.models import SessionConnection
from consilium.live.sequencer import (
    Change,
    ChangeWriter,
    Draft,
    load_changes,
    load_state,
    utcnow,
)
from consilium.live.sessions import (
    LiveContext,
    Outcome,
    due_soon,
    invitation_payload,
    study_uids_of_case,
)
from consilium.live.state import State, apply, clone

if TYPE_CHECKING:
    from consilium.live.render_share import SessionRender

log = logging.getLogger(__name__)

FLUSH_BURST = 3
"""Flushes of coalesced changes allowed at once before the ``coalesce`` interval applies: a
presenter's changes arriving about as often as the interval, with the jitter of a real network
and event loop, are not delayed (a strict "at most one per interval" held each one back by
12-20 ms, median, measured at 30 changes/s); faster ones are merged to one per interval."""
GAP_WAIT = 0.15
"""How long a feed waits for a missing change from the bus before reading it from the database."""
RECENT_KEPT = 1000
"""Changes a feed keeps for resuming clients; older ones are read from the database."""
RESUME_MAX = 500
"""A client this many changes behind gets a snapshot instead of the changes."""
SWEEP_SECONDS = 15.0
HEARTBEAT_SECONDS = 5.0
IDLE_FEED_SECONDS = 120.0
PREWARM_LEAD = timedelta(minutes=10)
CHANNEL = "consilium-live-changes"


def room_of(session_id: str) -> str:
    return f"session:{session_id}"


@dataclass
class Participant:
    """A connection of this process in a session."""

    sid: str
    session_id: str
    subject: str
    name: str
    institution: str
    role: str
    connection: str
    reader: Reader
    until: datetime | None = None  # an invitee's access ends then (see sessions.Admission)
    joined_at: float = field(default_factory=time.monotonic)


class Feed:
    """This process's view of one session: its state in seq order, and the local room."""

    def __init__(self, hub: LiveHub, session_id: str) -> None:
        self.hub = hub
        self.session_id = session_id
        self.state: State | None = None
        self.early: dict[int, dict[str, Any]] = {}
        self.ready = asyncio.Event()
        self.recent: deque[dict[str, Any]] = deque(maxlen=RECENT_KEPT)
        self.outbox: asyncio.Queue[dict[str, Any] | Callable[[], Awaitable[None]]] = \
            asyncio.Queue()
        self.participants: dict[str, Participant] = {}
        self.study_uids: tuple[str, ...] = ()
        self.series: dict[str, str | None] = {}  # series UID -> its study UID (None: unknown)
        self.render: SessionRender | None = None
        self.idle_since = time.monotonic()
        self.emitted = 0
        self._gap: asyncio.Task[None] | None = None
        self._tasks = [asyncio.get_running_loop().create_task(self._emit_loop(),
                                                              name=f"live-feed-{session_id}")]

    @property
    def seq(self) -> int:
        return int(self.state["seq"]) if self.state is not None else 0

    async def load(self) -> None:
        engine = self.hub.ctx.engine
        state, _ = await anyio.to_thread.run_sync(load_state, engine, self.session_id)
        uids = await anyio.to_thread.run_sync(_case_studies, engine, state.get("case_id"))
        self.study_uids = tuple(uids)
        self.state = state
        early, self.early = self.early, {}
        for seq in sorted(early):
            self.receive(early[seq])
        self.ready.set()

    def receive(self, change: dict[str, Any]) -> None:
        """Take a change from this process or the bus; in seq order, whatever the arrival."""
        seq = int(change["seq"])
        if self.state is None:
            self.early[seq] = change
            return
        if seq <= self.seq:
            return
        if seq > self.seq + 1:
            self.early[seq] = change
            if self._gap is None or self._gap.done():
                self._gap = asyncio.get_running_loop().create_task(self._fill_gap())
            return
        self._accept(change)
        self._drain()

    def _accept(self, change: dict[str, Any]) -> None:
        assert self.state is not None
        apply(self.state, change)
        self.recent.append(change)
        self.outbox.put_nowait(change)
        kind = change["kind"]
        if kind in (ChangeKind.VIEW_MPR, ChangeKind.VIEW_VOLUME) and self.render is not None:
            self.render.on_view(kind, change["payload"], int(change["seq"]))
        if kind == ChangeKind.MEMBER_UNINVITED:
            self.hub.expel(self, str(change["payload"]["subject"]), "uninvited")
        elif kind == ChangeKind.SESSION_ENDED:
            self.hub.expel(self, None, "ended")

    def _drain(self) -> None:
        while self.seq + 1 in self.early:
            self._accept(self.early.pop(self.seq + 1))
        for seq in [s for s in self.early if s <= self.seq]:
            del self.early[seq]

    async def _fill_gap(self) -> None:
        await asyncio.sleep(GAP_WAIT)
        while self.early and min(self.early) > self.seq + 1:
            first = min(self.early)
            missing = await anyio.to_thread.run_sync(
                load_changes, self.hub.ctx.engine, self.session_id, self.seq, first - 1)
            for change in missing:
                self.receive(change)
            if self.early and min(self.early) > self.seq + 1 and not missing:
                # cannot happen while committed changes are a prefix; never stall a session
                log.error("live session %s: changes %d..%d are missing; skipping them",
                          self.session_id, self.seq + 1, first - 1)
                assert self.state is not None
                self.state["seq"] = first - 1
            self._drain()

    async def _emit_loop(self) -> None:
        sio = self.hub.sio
        room = room_of(self.session_id)
        while True:
            item = await self.outbox.get()
            try:
                if callable(item):  # after the changes before it have gone out
                    await item()
                    continue
                await sio.emit(EVT_CHANGE, item, room=room, namespace=NAMESPACE,
                               ignore_queue=True)
                self.emitted += 1
            except Exception:  # a broken socket must not stop the session's feed
                log.exception("live session %s: emitting failed", self.session_id)

    def snapshot(self) -> State:
        assert self.state is not None
        return clone(self.state)

    def changes_after(self, last_seq: int) -> list[dict[str, Any]] | None:
        """The kept changes after ``last_seq`` up to now, or None if not all are kept."""
        if not self.recent or int(self.recent[0]["seq"]) > last_seq + 1:
            return None
        return [c for c in self.recent if int(c["seq"]) > last_seq]

    async def series_study(self, series_uid: str) -> str | None:
        """The study of a series if it is one of the case's (the presenter shows only those)."""
        if series_uid not in self.series:
            if len(self.series) > 1000:
                self.series.clear()
            rows = await anyio.to_thread.run_sync(catalog.series_instances,
                                                  self.hub.ctx.engine, series_uid)
            study = rows[0].study_uid if rows else None
            self.series[series_uid] = study if study in self.study_uids else None
        return self.series[series_uid]

    async def close(self) -> None:
        for task in [*self._tasks, self._gap]:
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self.render is not None:
            await self.render.close()


def _case_studies(engine: Any, case_id: Any) -> list[str]:
    if case_id is None:
        return []
    with Session(engine) as db:
        return study_uids_of_case(db, int(case_id))


@dataclass
class _Pending:
    draft: Draft
    key: tuple[str, str, str]


class LiveHub:
    """Everything live of one web process (see the module)."""

    def __init__(self, ctx: LiveContext, sio: Any, redis_url: str = "",
                 coalesce_seconds: float = 0.033,
                 prewarm: Callable[[str, list[str]], Coroutine[Any, Any, None]] | None = None,
                 prewarm_lead: timedelta = PREWARM_LEAD,
                 notify_case: Callable[[int, str], Awaitable[None]] | None = None) -> None:
        self.ctx = ctx
        self.sio = sio
        self.process_id = ctx.process_id or uuid.uuid4().hex[:16]
        self.writer = ChangeWriter(ctx.engine, self.process_id)
        self.redis_url = redis_url
        self.coalesce = coalesce_seconds
        self.prewarm = prewarm
        self.prewarm_lead = prewarm_lead
        self.notify_case = notify_case
        self.on_expel: Callable[[Participant], None] | None = None
        self.feeds: dict[str, Feed] = {}
        self._loading: dict[str, asyncio.Task[Feed]] = {}
        self._pending: dict[tuple[str, str, str], Draft] = {}
        self._wake: asyncio.Event | None = None  # created on start (needs the loop)
        self._started = False
        self._tasks: list[asyncio.Task[None]] = []
        self._last_flush = 0.0
        self._tokens = float(FLUSH_BURST)
        self._publish: asyncio.Queue[list[dict[str, Any]]] | None = None
        self._redis: Any = None
        self.prewarmed: set[str] = set()
        self._background: set[asyncio.Task[Any]] = set()
        self.coalesced = 0  # offered changes replaced by a newer one before being written

    # -- start --------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the background work of this process (idempotent; on first use: the web server
        has no startup hook the socket server could use)."""
        if self._started:
            return
        self._started = True
        loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._publish = asyncio.Queue()
        if self.redis_url:
            import redis.asyncio as aioredis

            self._redis = aioredis.from_url(self.redis_url)
            await self._heartbeat_once()
            self._tasks.append(loop.create_task(self._subscribe(), name="live-subscribe"))
            self._tasks.append(loop.create_task(self._heartbeat(), name="live-heartbeat"))
        self._tasks.append(loop.create_task(self._flush_loop(), name="live-coalesce"))
        self._tasks.append(loop.create_task(self._publish_loop(), name="live-publish"))
        self._tasks.append(loop.create_task(self._housekeeping(), name="live-housekeeping"))

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for feed in list(self.feeds.values()):
            await feed.close()
        await anyio.to_thread.run_sync(self.writer.close)
        if self._redis is not None:
            await self._redis.aclose()

    # -- feeds --------------------------------------------------------------------------------

    async def feed(self, session_id: str) -> Feed:
        """This process's feed of a session (loaded on first use)."""
        found = self.feeds.get(session_id)
        if found is not None:
            await found.ready.wait()
            return found
        feed = Feed(self, session_id)
        self.feeds[session_id] = feed
        try:
            await feed.load()
        except BaseException:
            self.feeds.pop(session_id, None)
            await feed.close()
            raise
        return feed

    def expel(self, feed: Feed, subject: str | None, reason: str) -> None:
        """Participants of this process who may no longer be in the session (uninvited, or
        everyone when it ended) leave its room after the change that says so."""
        for participant in list(feed.participants.values()):
            if subject is None or participant.subject == subject:
                feed.participants.pop(participant.sid, None)
                feed.outbox.put_nowait(functools.partial(self._expel, feed, participant,
                                                         reason))

    async def _expel(self, feed: Feed, participant: Participant, reason: str) -> None:
        """After the change that says why: out of the room, told so, and its connection closed
        (``member.left``; refused, harmlessly, once the session has ended)."""
        if feed.render is not None:
            feed.render.drop(participant.sid)
        await self.sio.leave_room(participant.sid, room_of(feed.session_id), namespace=NAMESPACE)
        await self.sio.emit(EVT_CLOSED, {"session_id": feed.session_id, "reason": reason},
                            to=participant.sid, namespace=NAMESPACE, ignore_queue=True)
        if self.on_expel is not None:
            self.on_expel(participant)
        if reason != "ended":  # not awaited here: the session's other changes go on
            self._spawn(self.record(Draft(
                feed.session_id, ChangeKind.MEMBER_LEFT, participant.subject,
                {"subject": participant.subject, "connection": participant.connection,
                 "reason": reason})), f"live-left-{participant.connection}")

    async def announce(self, outcome: Outcome) -> None:
        """What a lifecycle function did, made known: its changes delivered, the newly invited
        notified (``consilium:invited`` in their own room, no patient data), the case's
        parties told the case changed, an opened session's volumes prepared."""
        await self.start()
        self.deliver(outcome.changes)
        row = outcome.session
        for invitee in outcome.invited:
            await self.sio.emit(EVT_INVITED, invitation_payload(row),
                                room=f"user:{invitee.subject}", namespace="/")
        if outcome.opened:
            uids = await anyio.to_thread.run_sync(_case_studies, self.ctx.engine, row.case_id)
            self.prepare(row.id, uids)
        if self.notify_case is not None:
            await self.notify_case(row.case_id, "consilium")

    # -- writing ------------------------------------------------------------------------------

    async def record(self, draft: Draft) -> Change | None:
        """Write a durable change (after the pending coalesced ones of its session) and
        deliver it; None when the sequencer's rules refuse it."""
        await self.start()
        taken = [d for k, d in list(self._pending.items()) if k[0] == draft.session_id]
        for key in [k for k in self._pending if k[0] == draft.session_id]:
            del self._pending[key]
        results = await self._write([*taken, draft])
        return results[-1]

    def offer(self, draft: Draft) -> None:
        """A high-frequency change: the latest per key is written at the next tick."""
        key = (draft.session_id, draft.kind.value,
               draft.actor if draft.kind in PER_ACTOR_KINDS else "")
        if key in self._pending:
            self.coalesced += 1
        self._pending[key] = draft
        if self._wake is not None:
            self._wake.set()

    async def _flush_loop(self) -> None:
        assert self._wake is not None
        while True:
            await self._wake.wait()
            now = time.monotonic()
            self._tokens = min(FLUSH_BURST, self._tokens + (now - self._last_flush)
                               / self.coalesce)
            self._last_flush = now
            if self._tokens < 1.0:
                await asyncio.sleep((1.0 - self._tokens) * self.coalesce)
                self._tokens, self._last_flush = 1.0, time.monotonic()
            self._tokens -= 1.0
            self._wake.clear()
            # by session: every transaction locks session rows in one order (two processes'
            # flushes must not wait on each other crosswise); a session's own order is kept
            drafts = sorted(self._pending.values(), key=lambda d: d.session_id)
            self._pending = {}
            if drafts:
                try:
                    await self._write(drafts)
                except Exception:
                    log.exception("live: %d coalesced changes not written", len(drafts))

    async def _write(self, drafts: list[Draft]) -> list[Change | None]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[Change | None]] = loop.create_future()

        def done(result: list[Change | None] | BaseException) -> None:
            loop.call_soon_threadsafe(self._written, future, result)

        self.writer.submit(self.writer.drafts(drafts), done,
                           durable=any(d.durable for d in drafts))
        return await future

    def _written(self, future: asyncio.Future[list[Change | None]],
                 result: list[Change | None] | BaseException) -> None:
        if isinstance(result, BaseException):
            if not future.done():
                future.set_exception(result)
            return
        self.deliver([c for c in result if c is not None])
        if not future.done():
            future.set_result(result)

    def deliver(self, changes: list[Change]) -> None:
        """Committed changes: to this process's feeds now, to the others through the bus."""
        if not changes:
            return
        wires = [c.wire() for c in changes]
        for wire in wires:
            feed = self.feeds.get(wire["session_id"])
            if feed is not None:
                feed.receive(wire)
        if self._redis is not None and self._publish is not None:
            self._publish.put_nowait(wires)

    async def _publish_loop(self) -> None:
        assert self._publish is not None
        while True:
            wires = await self._publish.get()
            if self._redis is None:
                continue
            try:
                await self._redis.publish(CHANNEL, json.dumps(
                    {"process": self.process_id, "changes": wires}, ensure_ascii=False))
            except Exception as exc:  # the others fill the gap from the database
                log.warning("live: publishing %d change(s) failed: %s", len(wires), exc)

    async def _subscribe(self) -> None:
        while True:
            try:
                pubsub = self._redis.pubsub()
                await pubsub.subscribe(CHANNEL)
                async for message in pubsub.listen():
                    if message.get("type") != "message":
                        continue
                    data = json.loads(message["data"])
                    if data.get("process") == self.process_id:
                        continue
                    for wire in data.get("changes", []):
                        feed = self.feeds.get(wire.get("session_id"))
                        if feed is not None:
                            feed.receive(wire)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("live: the Redis subscription failed (%s); again in 1 s", exc)
                await asyncio.sleep(1.0)

    # -- presence and preparation ----------------------------------------------------------------

    def _process_key(self, process_id: str) -> str:
        return f"consilium:live:process:{process_id}"

    async def _heartbeat_once(self) -> None:
        try:
            await self._redis.set(self._process_key(self.process_id), "1",
                                  ex=int(SWEEP_SECONDS))
        except Exception as exc:
            log.warning("live: heartbeat to Redis failed: %s", exc)

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_SECONDS)
            await self._heartbeat_once()

    async def alive(self) -> set[str] | None:
        """Ids of the web processes alive now (None: not known, sweep nothing)."""
        if self._redis is None:
            return {self.process_id}
        try:
            keys = [k async for k in self._redis.scan_iter(match=self._process_key("*"))]
        except Exception as exc:
            log.warning("live: which processes are alive is not known: %s", exc)
            return None
        prefix = self._process_key("")
        alive = {(k.decode() if isinstance(k, bytes) else str(k)).removeprefix(prefix)
                 for k in keys}
        # without our own key, Redis lost its keys or our heartbeats fail: trust none of it
        return alive if self.process_id in alive else None

    async def sweep(self) -> int:
        """Close the connections that processes no longer alive left open."""
        alive = await self.alive()
        if not alive:
            return 0
        stale = await anyio.to_thread.run_sync(_connections_not_of, self.ctx.engine, alive)
        for session_id, connection, subject in stale:
            await self.record(Draft(session_id, ChangeKind.MEMBER_LEFT, subject, {
                "subject": subject, "connection": connection, "reason": "gone"}))
        return len(stale)

    async def _housekeeping(self) -> None:
        first = True
        while True:
            try:
                await self.sweep()
                self._expire()
                await self._prepare_due()
                if not first:
                    await self._drop_idle_feeds()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("live: housekeeping failed")
            first = False
            await asyncio.sleep(SWEEP_SECONDS)

    def _expire(self) -> None:
        """Invitees whose invitation ended while they were in the session leave it."""
        now = utcnow()
        for feed in self.feeds.values():
            for participant in list(feed.participants.values()):
                if participant.until is not None and participant.until <= now:
                    feed.participants.pop(participant.sid, None)
                    feed.outbox.put_nowait(functools.partial(self._expel, feed, participant,
                                                             "expired"))

    async def _prepare_due(self) -> None:
        if self.prewarm is None:
            return
        due = await anyio.to_thread.run_sync(due_soon, self.ctx, self.prewarm_lead)
        for session_id, uids in due:
            self.prepare(session_id, uids)

    def prepare(self, session_id: str, study_uids: list[str]) -> None:
        """Warm the render workers with the session's volumes (once per process)."""
        if self.prewarm is None or session_id in self.prewarmed:
            return
        self.prewarmed.add(session_id)
        self._spawn(self.prewarm(session_id, study_uids), f"live-prewarm-{session_id}")

    def _spawn(self, work: Coroutine[Any, Any, Any], name: str) -> None:
        """A task kept until it is done (the loop holds only weak references to tasks)."""
        task = asyncio.get_running_loop().create_task(work, name=name)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _drop_idle_feeds(self) -> None:
        now = time.monotonic()
        for session_id, feed in list(self.feeds.items()):
            if feed.participants:
                feed.idle_since = now
            elif now - feed.idle_since > IDLE_FEED_SECONDS:
                del self.feeds[session_id]
                await feed.close()


def _connections_not_of(engine: Any, alive: set[str]) -> list[tuple[str, str, str]]:
    with engine.connect() as conn:
        rows = conn.execute(select(SessionConnection.session_id,  # type: ignore[call-overload]
                                   SessionConnection.connection_id, SessionConnection.subject)
                            .where(col(SessionConnection.process_id).not_in(list(alive))))
        return [(str(a), str(b), str(c)) for a, b, c in rows]
