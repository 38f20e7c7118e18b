"""The bus between the web processes of a scaled-out deployment (``live.redis_url`` set): the
changes one process commits are published to the others (Redis publish/subscribe), and each
process keeps a heartbeat key, so that any of them can tell which processes are alive.

Without Redis there is one process: nothing is published, and the only process alive is this
one. A failed publish loses nothing: the other processes fill the gap from the database
(:mod:`.feed`).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

CHANNEL = "consilium-live-changes"
HEARTBEAT_SECONDS = 5.0


class ChangeBus:
    """This process's end of the bus; ``receive`` is called with each change (its wire form)
    that another process committed. A process is alive while its heartbeat key is, for
    ``alive_seconds`` after each heartbeat."""

    def __init__(self, redis_url: str, process_id: str,
                 receive: Callable[[dict[str, Any]], None], alive_seconds: int) -> None:
        self.redis_url = redis_url
        self.process_id = process_id
        self.receive = receive
        self.alive_seconds = alive_seconds
        self._redis: Any = None
        self._outbox: asyncio.Queue[list[dict[str, Any]]] | None = None

    async def start(self) -> list[asyncio.Task[None]]:
        """Connect (with Redis) and start the bus's tasks; the caller keeps and ends them."""
        loop = asyncio.get_running_loop()
        self._outbox = asyncio.Queue()
        tasks = []
        if self.redis_url:
            import redis.asyncio as aioredis

            self._redis = aioredis.from_url(self.redis_url)
            await self._heartbeat_once()
            tasks.append(loop.create_task(self._subscribe(), name="live-subscribe"))
            tasks.append(loop.create_task(self._heartbeat(), name="live-heartbeat"))
        tasks.append(loop.create_task(self._publish_loop(), name="live-publish"))
        return tasks

    async def close(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()

    def publish(self, wires: list[dict[str, Any]]) -> None:
        """Committed changes to the other processes (without Redis: to nobody)."""
        if self._redis is not None and self._outbox is not None:
            self._outbox.put_nowait(wires)

    async def _publish_loop(self) -> None:
        assert self._outbox is not None
        while True:
            wires = await self._outbox.get()
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
                        self.receive(wire)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("live: the Redis subscription failed (%s); again in 1 s", exc)
                await asyncio.sleep(1.0)

    # -- which processes are alive ---------------------------------------------------------------

    def _process_key(self, process_id: str) -> str:
        return f"consilium:live:process:{process_id}"

    async def _heartbeat_once(self) -> None:
        try:
            await self._redis.set(self._process_key(self.process_id), "1",
                                  ex=self.alive_seconds)
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
