"""Login rate limits per client address: in the process, or shared by every web process
through Redis when ``live.redis_url`` is set (else N processes would allow N times the limit)."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Protocol

log = logging.getLogger(__name__)


class RateLimiter(Protocol):
    async def allow(self, key: str) -> bool: ...


@dataclass
class LocalRateLimiter:
    """At most ``limit`` events per ``window`` seconds per key, sliding, in this process."""

    limit: int
    window: float = 60.0
    events: dict[str, deque[float]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def allow(self, key: str) -> bool:
        return self.allow_now(key)

    def allow_now(self, key: str) -> bool:
        now = time.monotonic()
        with self.lock:
            queue = self.events.setdefault(key, deque())
            while queue and now - queue[0] > self.window:
                queue.popleft()
            if len(queue) >= self.limit:
                return False
            queue.append(now)
            return True


class RedisRateLimiter:
    """At most ``limit`` events per key in each ``window``-second window (fixed windows: one
    INCR per event), counted in Redis for all processes. If Redis cannot be reached, the
    process's own limiter decides meanwhile: logins keep working, still limited."""

    def __init__(self, redis_url: str, limit: int, window: float = 60.0,
                 prefix: str = "consilium:login-rate") -> None:
        import redis.asyncio

        self.client: Any = redis.asyncio.Redis.from_url(redis_url, socket_timeout=2,
                                                        socket_connect_timeout=2)
        self.limit = limit
        self.window = window
        self.prefix = prefix
        self.fallback = LocalRateLimiter(limit, window)

    async def allow(self, key: str) -> bool:
        slot = int(time.time() // self.window)
        name = f"{self.prefix}:{key}:{slot}"
        try:
            async with self.client.pipeline(transaction=True) as pipe:
                pipe.incr(name)
                pipe.expire(name, int(self.window * 2))
                count, _ = await pipe.execute()
        except Exception as exc:  # redis.RedisError, OSError: limit in the process meanwhile
            log.warning("login rate limit: Redis unavailable (%s); limiting per process", exc)
            return self.fallback.allow_now(key)
        return int(count) <= self.limit


def make_rate_limiter(limit: int, redis_url: str) -> RateLimiter:
    return RedisRateLimiter(redis_url, limit) if redis_url else LocalRateLimiter(limit)
