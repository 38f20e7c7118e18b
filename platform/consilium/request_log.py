"""A summary of the web requests instead of a line per request.

One reading session asks for thousands of frames; uvicorn's access log wrote each (4,500 lines
after one session), burying what matters. By default (``http.access_log = false``) this
middleware counts the requests and writes one line per minute that had any: how many, how many
were refused (4xx) and how many failed (5xx), and the slowest. ``http.access_log = true`` brings
uvicorn's line per request back (and this summary is not installed).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger("consilium.web")

INTERVAL = 60.0


class RequestSummary:
    """ASGI middleware: counts HTTP requests by outcome; logs the counts once per interval."""

    def __init__(self, app: Any, interval: float = INTERVAL,
                 clock: Callable[[], float] = time.monotonic,
                 write: Callable[[str], None] = log.info) -> None:
        self.app = app
        self.interval = interval
        self.clock = clock
        self.write = write
        self._lock = threading.Lock()
        self._since = clock()
        self._counts = {"requests": 0, "refused": 0, "failed": 0}
        self._slowest = (0.0, "")

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = self.clock()
        status = 500  # an exception before the answer started is a failure

        async def watched(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, watched)
        finally:
            self.record(status, self.clock() - started, f"{scope['method']} {scope['path']}")

    def record(self, status: int, seconds: float, what: str) -> None:
        with self._lock:
            self._counts["requests"] += 1
            if 400 <= status < 500:
                self._counts["refused"] += 1
            elif status >= 500:
                self._counts["failed"] += 1
            if seconds > self._slowest[0]:
                self._slowest = (seconds, what)
            now = self.clock()
            if now - self._since < self.interval:
                return
            counts, slowest, since = dict(self._counts), self._slowest, self._since
            self._counts = {"requests": 0, "refused": 0, "failed": 0}
            self._slowest = (0.0, "")
            self._since = now
        self.write(f"web: {counts['requests']} requests in the last {now - since:.0f} s, "
                   f"{counts['refused']} refused (4xx), {counts['failed']} failed (5xx); "
                   f"slowest {slowest[0] * 1000:.0f} ms ({slowest[1]})")
