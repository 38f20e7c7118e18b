"""Rate limits per client address: in the process, or shared by every web process through Redis
when ``live.redis_url`` is set (else N processes would allow N times the limit). Used for login
attempts and for the audit events that anyone can cause without logging in."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Protocol

from consilium.audit import Actor, AuditAction, AuditOutcome, AuditTrail

log = logging.getLogger(__name__)


MAX_KEYS = 10_000  # addresses remembered per limiter in one process


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
            if key not in self.events and len(self.events) >= MAX_KEYS:
                self._forget_idle(now)
            queue = self.events.setdefault(key, deque())
            while queue and now - queue[0] > self.window:
                queue.popleft()
            if len(queue) >= self.limit:
                return False
            queue.append(now)
            return True

    def _forget_idle(self, now: float) -> None:
        """Memory stays bounded whatever the number of addresses: keys with no event in the
        window go; if every key is busy (a flood from very many addresses), all go."""
        for key in [k for k, q in self.events.items() if not q or now - q[-1] > self.window]:
            del self.events[key]
        if len(self.events) >= MAX_KEYS:
            self.events.clear()


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


def make_rate_limiter(limit: int, redis_url: str, prefix: str = "consilium:login-rate"
                      ) -> RateLimiter:
    if redis_url:
        return RedisRateLimiter(redis_url, limit, prefix=prefix)
    return LocalRateLimiter(limit)


UNAUTHENTICATED_TEXT_LIMIT = 120  # characters of a caller-chosen value kept in the audit


def clip(text: str, limit: int = UNAUTHENTICATED_TEXT_LIMIT) -> str:
    """Caller-chosen text as it may go into the audit: printable characters only, at most
    ``limit`` of them (an error_description or a token's issuer can be anything)."""
    printable = "".join(c if c.isprintable() else "?" for c in text[:limit + 1])
    return printable if len(printable) <= limit else printable[:limit - 1] + "…"


class UnauthenticatedAudit:
    """Audit events that anyone can cause without logging in (a forged OIDC callback, an
    invalid bearer token, a rate-limited login): at most ``limit`` per minute per client
    address, with their text clipped. Beyond the limit one ``suppressed`` event per minute and
    address says that a flood was cut, so the trail shows it without being filled by it."""

    def __init__(self, audit: AuditTrail, limit: int, redis_url: str = "") -> None:
        self.audit = audit
        self.events = make_rate_limiter(limit, redis_url, "consilium:anon-audit")
        self.notices = make_rate_limiter(1, redis_url, "consilium:anon-audit-cut")

    async def record(self, actor: Actor, action: AuditAction, outcome: AuditOutcome,
                     detail: dict[str, str]) -> None:
        clipped = {clip(k, 40): clip(v) for k, v in detail.items()}
        if await self.events.allow(actor.source):
            self.audit.record(actor, action, outcome, detail=clipped)
        elif await self.notices.allow(actor.source):
            self.audit.record(actor, action, outcome, detail={
                "reason": "audit rate limit: further events from this address are not "
                          "recorded for a minute", "first": clipped.get("reason", "")})
        else:
            log.debug("unauthenticated audit event from %s not recorded (rate limit)",
                      actor.source)
