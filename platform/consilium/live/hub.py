"""The live sessions of one web process: writing changes, handing them to the feeds of the
sessions its participants are in (:mod:`.feed`) and to the other processes (:mod:`.bus`), and
keeping presence.

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
    A committed change goes to this process's :class:`~.feed.Feed` of its session at once (the
    feed orders, folds and emits it to the session's room), and to the other web processes
    through the bus (:mod:`.bus`, when ``live.redis_url`` is set).

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
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from datetime import timedelta
from typing import Any

import anyio
from sqlalchemy import select
from sqlmodel import col

from consilium.live.bus import ChangeBus
from consilium.live.events import EVT_CLOSED, EVT_INVITED, NAMESPACE, PER_ACTOR_KINDS, ChangeKind
from consilium.live.feed import Feed, Participant, case_studies, room_of
from consilium.live.models import SessionConnection
from consilium.live.sequencer import Change, ChangeWriter, Draft, utcnow
from consilium.live.sessions import LiveContext, Outcome, due_soon, invitation_payload

log = logging.getLogger(__name__)

FLUSH_BURST = 3
"""Flushes of coalesced changes allowed at once before the ``coalesce`` interval applies: a
presenter's changes arriving about as often as the interval, with the jitter of a real network
and event loop, are not delayed (a strict "at most one per interval" held each one back by
12-20 ms, median, measured at 30 changes/s); faster ones are merged to one per interval."""
SWEEP_SECONDS = 15.0
IDLE_FEED_SECONDS = 120.0
PREWARM_LEAD = timedelta(minutes=10)


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
        self.bus = ChangeBus(redis_url, self.process_id, self._received, int(SWEEP_SECONDS))
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
        self._tasks.extend(await self.bus.start())
        self._tasks.append(loop.create_task(self._flush_loop(), name="live-coalesce"))
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
        await self.bus.close()

    # -- feeds --------------------------------------------------------------------------------

    async def feed(self, session_id: str) -> Feed:
        """This process's feed of a session (loaded on first use)."""
        found = self.feeds.get(session_id)
        if found is not None:
            await found.ready.wait()
            return found
        feed = Feed(session_id, self.ctx.engine, self.sio, self.expel)
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
            uids = await anyio.to_thread.run_sync(case_studies, self.ctx.engine, row.case_id)
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
            self._received(wire)
        self.bus.publish(wires)

    def _received(self, wire: dict[str, Any]) -> None:
        """A committed change (of this process or from the bus) to its session's feed, if
        this process has one."""
        feed = self.feeds.get(wire.get("session_id", ""))
        if feed is not None:
            feed.receive(wire)

    # -- presence and preparation ----------------------------------------------------------------

    async def sweep(self) -> int:
        """Close the connections that processes no longer alive left open."""
        alive = await self.bus.alive()
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
