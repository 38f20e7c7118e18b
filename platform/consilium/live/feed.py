"""This process's view of one live session: its state in seq order, and the room of its
participants on this process.

Delivering
    A committed change reaches the :class:`Feed` of its session from this process's writer at
    once and from the other web processes through the bus (:mod:`.bus`). Publishing order
    between processes is not commit order, so each feed takes changes strictly in seq order: a
    change that arrives early waits in the feed; a gap not filled by the bus within
    :data:`GAP_WAIT` is read from the database (committed changes are a prefix of the sequence,
    see :mod:`.sequencer`). The feed folds each change into its state and emits it to the
    session's room of this process, one change after the other. So every participant, on
    whichever process, gets every change exactly once, in seq order.

Joining
    The feed's state is the snapshot a joiner gets: the join enters the room before it reads the
    state, so every change after the snapshot's seq reaches the joiner (some may come before the
    join's answer: the client keeps those with a higher seq).

A feed is handed what it uses of its process (the engine, the Socket.IO server, how to expel a
participant) by :class:`.hub.LiveHub`, which owns the feeds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import anyio
from sqlalchemy import Engine
from sqlmodel import Session

from consilium.archive import catalog
from consilium.archive.access import Reader
from consilium.live.events import EVT_CHANGE, NAMESPACE, ChangeKind
from consilium.live.sequencer import load_changes, load_state
from consilium.live.sessions import study_uids_of_case
from consilium.live.state import State, apply, clone

if TYPE_CHECKING:
    from consilium.live.render_share import SessionRender

log = logging.getLogger(__name__)

GAP_WAIT = 0.15
"""How long a feed waits for a missing change from the bus before reading it from the database."""
RECENT_KEPT = 1000
"""Changes a feed keeps for resuming clients; older ones are read from the database."""
RESUME_MAX = 500
"""A client this many changes behind gets a snapshot instead of the changes."""


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


Expel = Callable[["Feed", str | None, str], None]
"""Participants of this process leave a session (one subject, or everyone: None), and why."""


class Feed:
    """This process's view of one session: its state in seq order, and the local room."""

    def __init__(self, session_id: str, engine: Engine, sio: Any, expel: Expel) -> None:
        self.session_id = session_id
        self.engine = engine
        self.sio = sio
        self.expel = expel
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
        state, _ = await anyio.to_thread.run_sync(load_state, self.engine, self.session_id)
        uids = await anyio.to_thread.run_sync(case_studies, self.engine, state.get("case_id"))
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
            self.expel(self, str(change["payload"]["subject"]), "uninvited")
        elif kind == ChangeKind.SESSION_ENDED:
            self.expel(self, None, "ended")

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
                load_changes, self.engine, self.session_id, self.seq, first - 1)
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
        sio = self.sio
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
                                                  self.engine, series_uid)
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


def case_studies(engine: Engine, case_id: Any) -> list[str]:
    """The studies of a session's case (none before it has one)."""
    if case_id is None:
        return []
    with Session(engine) as db:
        return study_uids_of_case(db, int(case_id))
