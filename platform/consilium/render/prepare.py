"""A viewer's request to prepare a series for MPR / 3-D while the reader still looks at its
first slices (``POST /api/render/series/{uid}/prepare``, :mod:`.routes`).

Opening the MPR / 3-D layout of a cold 300-slice CT waited for the volume's build in the render
worker: 0.6-1.2 s of CPU, 2-6.5 s of wall time on 2 cores shared with the browser and the
slices' encoding (bench/README.md). The viewer therefore asks for the volume as soon as the
first image of a volume-capable series is painted (never before: the build would compete with
that image), and the render worker builds it, its reslicer and the coarse copy's ray caster
(:func:`.prewarm.warm_source`, depth ``preview``) as background jobs, after every job someone
waits for (:class:`.workers.JobQueue`). The layout then finds them warm.

Bounded: one preparation per series (and volume version) at a time, whoever asked (a second
ask joins the first); at most :data:`MAX_PER_USER` running for one user and
:data:`MAX_RUNNING` in all, beyond which an ask is skipped (a hint, not an order: the layout
builds what it needs anyway). What is built stays in the worker's volume cache, whose LRU and
memory budget decide as for every other volume.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Literal

from consilium.render.bridge import RenderBridge, RenderFailure
from consilium.render.prewarm import Warmed, warm_source
from consilium.render.protocol import SeriesSource

log = logging.getLogger(__name__)

MAX_PER_USER = 2
"""Preparations one user may have running: the series on screen and the one opened before it."""
MAX_RUNNING = 8
"""Preparations running in one web process."""

Started = Literal["queued", "running", "skipped"]
"""What an ask did: started a preparation, joined one running, or nothing (over a bound)."""


class Preparations:
    """The preparations running in this web process (one per series and volume version)."""

    def __init__(self, bridge: RenderBridge) -> None:
        self.bridge = bridge
        self._running: dict[tuple[str, str], asyncio.Task[Warmed]] = {}
        self._by_user: dict[str, set[tuple[str, str]]] = {}

    def running(self) -> int:
        return len(self._running)

    def start(self, user: str, source: SeriesSource) -> tuple[Started, asyncio.Task[Warmed] | None]:
        """Start preparing ``source`` for ``user`` (or join the preparation running); the task
        gives the outcome (never raises)."""
        key = source.key
        task = self._running.get(key)
        if task is not None:
            return "running", task
        mine = self._by_user.setdefault(user, set())
        if len(mine) >= MAX_PER_USER or len(self._running) >= MAX_RUNNING:
            if not mine:
                del self._by_user[user]
            log.info("series %s not prepared for %s: %d preparations running (%d of theirs)",
                     source.series_uid, user, len(self._running), len(mine))
            return "skipped", None
        task = asyncio.get_running_loop().create_task(
            self._prepare(source), name=f"render-prepare-{source.series_uid}")
        self._running[key] = task
        mine.add(key)
        task.add_done_callback(lambda _: self._done(user, key))
        return "queued", task

    async def _prepare(self, source: SeriesSource) -> Warmed:
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            return await warm_source(self.bridge, source, "preview", background=True)
        except RenderFailure as exc:
            log.info("series %s not prepared: %s", source.series_uid, exc.message)
            return Warmed(source.series_uid, False, loop.time() - started, exc.message,
                          exc.status, exc.reason)

    def _done(self, user: str, key: tuple[str, str]) -> None:
        self._running.pop(key, None)
        mine = self._by_user.get(user)
        if mine is not None:
            mine.discard(key)
            if not mine:
                del self._by_user[user]
