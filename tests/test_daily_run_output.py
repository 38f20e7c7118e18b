"""What `make run` prints: the start ends with the box of addresses and logins; the demo
files refused on purpose are one line, not a wall of warnings; requests are summed up, not
logged one by one (uvicorn's access log is a setting). And the summary's arithmetic."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx

from consilium.request_log import RequestSummary
from tests.conftest import CONFIG, CONSILIUM, free_port


def test_serve_ends_its_start_with_the_box(tmp_path: Path) -> None:
    http_port, dicom_port = free_port(), free_port()
    out = tmp_path / "out.log"
    env = dict(os.environ, CONSILIUM_DEMO_CT_SLICES="2",  # DIMSE workers as configured (2)
               CONSILIUM_PUBLIC_URL=f"http://localhost:{http_port}")
    env.pop("CONSILIUM_CONFIG", None)
    with out.open("wb") as sink:
        proc = subprocess.Popen(
            [str(CONSILIUM), "serve", "--config", str(CONFIG), "--data-dir",
             str(tmp_path / "var"), "--http-port", str(http_port), "--dicom-port",
             str(dicom_port)], stdout=sink, stderr=subprocess.STDOUT, env=env)
        try:
            deadline = time.monotonic() + 240
            while "Consilium is running" not in out.read_text(errors="replace"):
                assert proc.poll() is None, out.read_text(errors="replace")
                assert time.monotonic() < deadline, out.read_text(errors="replace")
                time.sleep(0.2)
            time.sleep(1.0)  # whatever else the start would print comes now
            at_start = out.read_text(errors="replace")
            with httpx.Client(base_url=f"http://localhost:{http_port}") as client:
                for _ in range(40):
                    assert client.get("/healthz").status_code == 200
                assert client.get("/api/me").status_code == 401
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
    text = out.read_text(errors="replace")
    lines = at_start.rstrip().splitlines()
    box = next(i for i, line in enumerate(lines) if "Consilium is running" in line)
    # last: only the box's own lines follow it (a DIMSE worker process that took longer than
    # the box waits for, on a busy machine, may still say that it listens)
    after = [line for line in lines[box:] if line.strip() and "listening on" not in line]
    assert len(after) <= 9 and all(line.startswith("  ") for line in after), after
    before = lines[:box]
    assert not [line for line in before if "WARNING" in line or "ERROR" in line], before
    refused = [line for line in before if "refused as expected" in line]
    assert len(refused) == 1, before
    assert "GET /healthz" not in text  # no line per request
    # 40 requests leave no line each: what follows the start is the shut-down (uvicorn's and
    # the app's lifespan: fewer than ten lines)
    assert len(text.splitlines()) < len(lines) + 10


def test_the_summary_counts_and_writes_once_a_minute() -> None:
    now = [0.0]
    written: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["path"] == "/boom":
            raise RuntimeError("boom")
        await send({"type": "http.response.start", "status": int(scope["path"][1:])})
        await send({"type": "http.response.body", "body": b""})
        now[0] += 0.25 if scope["path"] == "/404" else 0.01

    summary = RequestSummary(app, interval=60, clock=lambda: now[0], write=written.append)

    async def call(path: str) -> None:
        async def send(_message: Any) -> None:
            return None

        async def receive() -> Any:
            return {"type": "http.request"}

        with contextlib.suppress(RuntimeError):
            await summary({"type": "http", "method": "GET", "path": path}, receive, send)

    async def session() -> None:
        for path in ("/200", "/200", "/404", "/boom"):
            await call(path)
        assert written == []  # not a minute yet
        now[0] = 61.0
        await call("/200")

    asyncio.run(session())
    assert written == ["web: 5 requests in the last 61 s, 1 refused (4xx), 1 failed (5xx); "
                       "slowest 250 ms (GET /404)"]
