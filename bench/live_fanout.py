"""Live consilium fan-out: a presenter's change reaching every participant, end to end.

Real ``consilium serve`` processes (one; or two on a private PostgreSQL and Redis), logged-in
clinicians of the demo provider, and ``--participants`` Socket.IO connections on ``/consilium``
(python-socketio's asyncio client, all in this script's one event loop; a clinician may hold
several connections: each is one participant). Measured:

* **presenter change -> every follower**: the presenter sends ``view.stack`` changes at
  ``--hz`` for ``--seconds``, each with its own slice number and send time; every follower
  notes when the change with that slice arrives. p50 / p99 over all (follower, change) pairs,
  and how many of the sent changes were delivered (coalescing may merge two that come closer
  than ``live.coalesce_ms``). The follower's own event loop is part of the path (as a browser's
  would be), on the same 2 cores as the server;
* **memory per participant**: resident memory of the server process(es) before the
  participants connect and join, and after;
* **a scripted session** (``--script-seconds``, once, at the smallest participant count): a
  presenter scrolling at 60 updates/s, then rotating the 3D view at 60/s, then both with a
  laser pointer at 60/s; messages per second and bytes per second each participant receives
  (``session:change`` only; frames of shared render streams are in ``live_render.py``).

    python bench/live_fanout.py [--participants 10 50 100] [--seconds 20] [--hz 30]
                                [--two-processes] [--script-seconds 60]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common import CONFIG, CONSILIUM, ROOT, machine_cpu, percentile, print_machine

sys.path.insert(0, str(ROOT))  # tests.*: the same servers and helpers as the tests

import httpx
import socketio
from pydicom import dcmread
from tests.webserver import WebServer, csrf_of

from consilium.synthetic import PatientSpec, StudySpec, write_ct_series

NS = "/consilium"
PARTIES = ("ivanova", "sidorov", "kuznetsova", "morozov", "petrov")  # petrov: invited
MB = 2**20


@dataclass
class Setup:
    servers: list[WebServer]
    study_uid: str
    series_uid: str
    session_id: str = ""
    cookies: dict[tuple[int, str], str] = field(default_factory=dict)


def cpu_of(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss(server: WebServer) -> int:
    """Resident memory of the web process itself (not its workers)."""
    assert server.proc is not None
    status = Path(f"/proc/{server.proc.pid}/status").read_text()
    return int(next(x for x in status.splitlines() if x.startswith("VmRSS:")).split()[1]) * 1024


def new_session(setup: Setup) -> str:
    web = setup.servers[0]
    chair = httpx.Client(base_url=web.url, timeout=30)
    chair.cookies.set("consilium_session", setup.cookies[(0, "ivanova")])

    def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
        answer = chair.post(path, json=body, headers={"X-CSRF-Token": csrf_of(chair)})
        answer.raise_for_status()
        return dict(answer.json())

    case = post("/api/cases", {"question": "bench", "study_uids": [setup.study_uid],
                               "target_institution": "regional-center"})
    post(f"/api/cases/{case['id']}/submit", {})
    return str(post(f"/api/cases/{case['id']}/consilia", {"invitees": ["dev:petrov"]})["id"])


class Member:
    """One participant: an asyncio Socket.IO client on /consilium."""

    def __init__(self, url: str, cookie: str) -> None:
        self.url, self.cookie = url, cookie
        self.client = socketio.AsyncClient(reconnection=False)
        # (arrival, kind, slice of a view.stack or -1, bytes): no dicts kept, so that the
        # collector of this script has nothing to walk while it measures (see fanout)
        self.received: list[tuple[float, str, int, int]] = []
        self.client.on("session:change", self._on_change, namespace=NS)

    async def _on_change(self, change: dict[str, Any]) -> None:
        arrived = time.perf_counter()
        size = len(json.dumps(change, separators=(",", ":")).encode())
        index = (change["payload"]["state"]["viewports"][0]["image_index"]
                 if change["kind"] == "view.stack" else -1)
        self.received.append((arrived, change["kind"], index, size))

    async def start(self, session_id: str) -> None:
        await self.client.connect(self.url, transports=["websocket"], namespaces=[NS],
                                  headers={"Cookie": f"consilium_session={self.cookie}"},
                                  wait_timeout=30)
        answer = await self.client.call("session:join", {"session_id": session_id},
                                        namespace=NS, timeout=60)
        assert answer["ok"], answer

    async def stop(self) -> None:
        await self.client.disconnect()


async def loop_lag(lags: list[float], period: float = 0.005) -> None:
    """How late this script's own event loop wakes up (its participants' delays are part of
    every latency measured: a slow client, not the server)."""
    while True:
        started = time.perf_counter()
        await asyncio.sleep(period)
        lags.append((time.perf_counter() - started - period) * 1000)


def stack(setup: Setup, index: int) -> dict[str, Any]:
    return {"viewports": [{"study_uid": setup.study_uid, "series_uid": setup.series_uid,
                           "image_index": index}]}


def volume(setup: Setup, azimuth: float) -> dict[str, Any]:
    return {"study_uid": setup.study_uid, "series_uid": setup.series_uid,
            "azimuth": azimuth, "preset": "ct-bone", "size": [512, 512]}


async def join_all(setup: Setup, count: int) -> tuple[Member, list[Member]]:
    presenter = Member(setup.servers[0].url, setup.cookies[(0, "ivanova")])
    await presenter.start(setup.session_id)
    followers = []
    for n in range(count):
        where = n % len(setup.servers)
        who = PARTIES[1 + n % (len(PARTIES) - 1)]
        followers.append(Member(setup.servers[where].url, setup.cookies[(where, who)]))
    for i in range(0, count, 10):  # ten at a time: a crowd arriving, not one by one
        await asyncio.gather(*(f.start(setup.session_id) for f in followers[i:i + 10]))
    await asyncio.sleep(1.0)  # everyone's member.joined has gone out
    return presenter, followers


async def fanout(setup: Setup, count: int, seconds: float, hz: float) -> None:
    setup.session_id = new_session(setup)
    before = sum(rss(s) for s in setup.servers)
    presenter, followers = await join_all(setup, count)
    after = sum(rss(s) for s in setup.servers)
    for f in followers:
        f.received.clear()
    sent: dict[int, float] = {}
    busy0, wall0 = machine_cpu(), time.monotonic()
    pids = [s.proc.pid for s in setup.servers if s.proc is not None]
    server0, client0 = sum(cpu_of(p) for p in pids), cpu_of(os.getpid())
    lags: list[float] = []
    watcher = asyncio.get_running_loop().create_task(loop_lag(lags))
    gc.collect()
    gc.disable()  # the measuring side: a collection here is a pause of every participant
    started = time.perf_counter()
    index = 0
    while time.perf_counter() - started < seconds:
        index += 1
        sent[index] = time.perf_counter()
        await presenter.client.emit("view:change", {
            "session_id": setup.session_id, "kind": "view.stack",
            "state": stack(setup, index)}, namespace=NS)
        await asyncio.sleep(max(0.0, started + index / hz - time.perf_counter()))
    await asyncio.sleep(1.5)
    gc.enable()
    watcher.cancel()
    wall = time.monotonic() - wall0
    busy = (machine_cpu() - busy0) / wall
    server = (sum(cpu_of(p) for p in pids) - server0) / wall
    client = (cpu_of(os.getpid()) - client0) / wall
    latencies: list[float] = []
    delivered: list[int] = []
    for f in followers:
        got = [(t, i) for t, kind, i, _ in f.received if kind == "view.stack"]
        delivered.append(len(got))
        latencies += [(t - sent[i]) * 1000 for t, i in got if i in sent]
    share = sum(delivered) / (len(followers) * index)
    last_ok = all(any(kind == "view.stack" and i == index for _, kind, i, _ in f.received)
                  for f in followers)
    print(f"{count:4d} participants on {len(setup.servers)} process(es): presenter -> follower "
          f"p50 {percentile(latencies, 50):6.1f} ms  p99 {percentile(latencies, 99):6.1f} ms  "
          f"max {max(latencies):6.1f} ms  (n={len(latencies)}; {share:.1%} of {index} changes "
          f"at {hz:g}/s delivered, last one to all: {last_ok}); server RSS +"
          f"{(after - before) / count / 1024:.0f} KiB per participant; cores busy: machine "
          f"{busy:.2f} of {len(os.sched_getaffinity(0))}, web process(es) {server:.2f}, this "
          f"script's participants {client:.2f}; this script's own event loop late by p99 "
          f"{percentile(lags, 99):.1f} ms, max {max(lags):.1f} ms", flush=True)
    for member in (presenter, *followers):
        await member.stop()


async def scripted(setup: Setup, count: int, seconds: float) -> None:
    setup.session_id = new_session(setup)
    presenter, followers = await join_all(setup, count)
    for f in followers:
        f.received.clear()
    third = seconds / 3
    started = time.perf_counter()
    n = 0
    while (elapsed := time.perf_counter() - started) < seconds:
        n += 1
        if elapsed < third or elapsed >= 2 * third:
            await presenter.client.emit("view:change", {
                "session_id": setup.session_id, "kind": "view.stack",
                "state": stack(setup, n % 300)}, namespace=NS)
        if elapsed >= third:
            await presenter.client.emit("view:change", {
                "session_id": setup.session_id, "kind": "view.volume",
                "state": volume(setup, float(n % 360))}, namespace=NS)
        if elapsed >= 2 * third:
            await presenter.client.emit("pointer:move", {
                "session_id": setup.session_id, "series_uid": setup.series_uid,
                "image_id": "1.2.3", "x": float(n % 512), "y": 100.0}, namespace=NS)
        await asyncio.sleep(max(0.0, started + n / 60.0 - time.perf_counter()))
    await asyncio.sleep(1.0)
    messages = [len(f.received) / seconds for f in followers]
    volume_bytes = [sum(s for *_, s in f.received) / seconds for f in followers]
    kinds: dict[str, int] = {}
    for _, kind, _, _ in followers[0].received:
        kinds[kind] = kinds.get(kind, 0) + 1
    print(f"scripted {seconds:.0f} s session (scroll 60/s, then rotate 60/s, then both + "
          f"pointer 60/s), {count} participants: per participant {sum(messages) / count:.1f} "
          f"messages/s, {sum(volume_bytes) / count / 1024:.2f} KiB/s "
          f"({sum(volume_bytes) / count * seconds / 1024:.0f} KiB in all); "
          f"the presenter sent {n} view updates and {n * 2 // 3} pointer moves; "
          f"received by kind: {kinds}", flush=True)
    for member in (presenter, *followers):
        await member.stop()


def prepare(base: Path, two: bool, stack_postgres: Any) -> Setup:
    study = StudySpec(PatientSpec("BENCH-LIVE", "Live^Fanout"), "20261204")
    paths = write_ct_series(study, base / "ct", slices=8, rows=32, columns=32,
                            uid_seed="bench-live-fanout")
    first = dcmread(paths[0], stop_before_pixels=True)
    env = {"CONSILIUM_IDENTITY_LOGIN_ATTEMPTS_PER_MINUTE": "1000",
           "CONSILIUM_LIVE_PREWARM_SERIES": "0", "CONSILIUM_LOG_LEVEL": "WARNING"}
    if two:
        database_url, redis_url = stack_postgres
        env.update(CONSILIUM_DATABASE_URL=database_url, CONSILIUM_LIVE_REDIS_URL=redis_url)
    run_env = {k: v for k, v in {**os.environ, **env}.items() if k != "CONSILIUM_CONFIG"}
    subprocess.run([str(CONSILIUM), "import", "--config", str(CONFIG), "--data-dir",
                    str(base / "var"), "--institution", "city-hospital", "--quiet",
                    str(base / "ct")], check=True, capture_output=True, env=run_env)
    servers = [WebServer(base / "var", extra_env=env).start()]
    if two:
        servers.append(WebServer(base / "var", extra_env=env).start())
    setup = Setup(servers, str(first.StudyInstanceUID), str(first.SeriesInstanceUID))
    for i, server in enumerate(servers):
        for who in PARTIES:
            setup.cookies[(i, who)] = server.login(who).cookies["consilium_session"]
    return setup


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--participants", type=int, nargs="+", default=[10, 50, 100])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--hz", type=float, default=30.0)
    parser.add_argument("--two-processes", action="store_true",
                        help="two web processes on PostgreSQL + Redis (followers alternate)")
    parser.add_argument("--script-seconds", type=float, default=60.0,
                        help="the scripted session (0: skip)")
    args = parser.parse_args()
    where = "two processes (PostgreSQL + Redis)" if args.two_processes else "one process (SQLite)"
    print_machine(f"live consilium fan-out, {where}")
    with tempfile.TemporaryDirectory(prefix="consilium-bench-live-") as tmp:
        if args.two_processes:
            from tests.postgres import postgres_server
            from tests.redis_server import redis_server

            with postgres_server() as database_url, redis_server() as redis_url:
                return run(args, Path(tmp), (database_url, redis_url))
        return run(args, Path(tmp), None)


def run(args: argparse.Namespace, base: Path, stack_postgres: Any) -> int:
    setup = prepare(base, args.two_processes, stack_postgres)
    try:
        for count in args.participants:
            asyncio.run(fanout(setup, count, args.seconds, args.hz))
        if args.script_seconds > 0:
            asyncio.run(scripted(setup, min(args.participants), args.script_seconds))
    finally:
        for server in setup.servers:
            server.stop()
    print(f"# load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
