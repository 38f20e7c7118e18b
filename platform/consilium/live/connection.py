"""One Socket.IO connection of the ``/consilium`` namespace, as its event handlers see it: who
is calling, the sessions it joined, its budget of durable changes, and the refusal its events
are answered with.

Kept apart from :mod:`.namespace` so that the handlers of one kind of event living in their own
module (:mod:`.mark_events`) take the connection without importing the namespace back.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from consilium.archive.access import Reader
from consilium.identity.policy import Principal
from consilium.live.feed import Participant

BURST = 20
"""Durable changes (chat, hand, control) a connection may send at once..."""
PER_SECOND = 5.0
"""...and then per second: each is a database write and a message to everyone."""


@dataclass(eq=False)
class Connection:
    sid: str
    principal: Principal
    source: str
    joined: dict[str, Participant] = field(default_factory=dict)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    tokens: float = BURST
    refilled: float = field(default_factory=time.monotonic)

    def reader(self) -> Reader:
        """A fresh reader (its grants read now, not at connect)."""
        return Reader.of(self.principal, self.source, "socket")

    def allow(self) -> bool:
        now = time.monotonic()
        self.tokens = min(BURST, self.tokens + (now - self.refilled) * PER_SECOND)
        self.refilled = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


class Refusal(Exception):
    """An event refused: answered as ``{"ok": false, "status", "error", "reason"}``."""

    def __init__(self, status: int, error: str, reason: str = "") -> None:
        super().__init__(error)
        self.status, self.error, self.reason = status, error, reason

    def ack(self) -> dict[str, Any]:
        return {"ok": False, "status": self.status, "error": self.error, "reason": self.reason}
