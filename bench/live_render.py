"""A live consilium's shared 3D: one render of the presenter's view, the same frames to every
follower, on a 512x512x300 CT.

A real ``consilium serve`` (one render worker, the default), the CT imported with ``consilium
import``, a case and an opened session; ``--followers`` participants (python-socketio asyncio
clients, all in this script's event loop, each acknowledging every frame at once) follow the
session's ``3d`` stream. Measured:

* **preparing** the session's volume when it opens (build + ray caster state, in the worker),
  and then the first 3D frame of the session (presenter's change -> frame at a follower);
* **orbiting**: the presenter sends ``view.volume`` changes at ``--hz`` (3 degrees each) for
  ``--seconds``; per follower: interactive frames per second received, and the latency from the
  presenter sending the change to the follower receiving its frame (p50/p95); the bytes per
  follower per second. Targets: >= 25 frames/s to each of 10 followers, p95 <= 100 ms; then
  the full-quality frame the stream renders once the presenter stops (its size, and when it
  reached the last follower after the last change);
* for comparison, in the same run: **one viewer alone** orbiting through its own
  ``render:subscribe`` stream;
* an oblique 10 mm slab MIP at 512 px through the shared stream: the worker's time for the
  full-quality frame (``render_ms``) and presenter -> follower.

    python bench/live_render.py [--slices 300] [--size 512] [--followers 10] [--seconds 20]
                                [--hz 30]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import CONFIG, CONSILIUM, ROOT, machine_cpu, percentile, print_machine

sys.path.insert(0, str(ROOT))

import httpx
import socketio
from pydicom import dcmread
from tests.webserver import WebServer, csrf_of

from consilium.synthetic import PatientSpec, StudySpec, write_ct_series

NS = "/consilium"
FOLLOWERS = ("sidorov", "kuznetsova", "morozov", "petrov")
MB = 2**20


def ms(values: list[float]) -> str:
    if not values:
        return "no frames"
    return (f"p50 {percentile(values, 50):6.1f} ms  p95 {percentile(values, 95):6.1f} ms  "
            f"(n={len(values)})")


class Viewer:
    def __init__(self, url: str, cookie: str, name: str) -> None:
        self.url, self.cookie, self.name = url, cookie, name
        self.client = socketio.AsyncClient(reconnection=False)
        self.frames: list[tuple[float, dict[str, Any]]] = []
        self.changes: list[tuple[float, dict[str, Any]]] = []
        self.client.on("session:render", self._frame, namespace=NS)
        self.client.on("session:change", self._change, namespace=NS)
        self.client.on("render:frame", self._own_frame)

    async def _frame(self, frame: dict[str, Any]) -> bool:
        self.frames.append((time.perf_counter(), frame))
        return True  # the acknowledgement

    async def _own_frame(self, frame: dict[str, Any]) -> bool:
        self.frames.append((time.perf_counter(), frame))
        return True

    async def _change(self, change: dict[str, Any]) -> None:
        self.changes.append((time.perf_counter(), change))

    async def connect(self) -> None:
        await self.client.connect(self.url, transports=["websocket"], namespaces=["/", NS],
                                  headers={"Cookie": f"consilium_session={self.cookie}"},
                                  wait_timeout=30)

    async def call(self, event: str, data: dict[str, Any], namespace: str = NS) -> Any:
        return await self.client.call(event, data, namespace=namespace, timeout=300)


def volume(study: str, series: str, azimuth: float, size: int) -> dict[str, Any]:
    return {"study_uid": study, "series_uid": series, "preset": "ct-bone", "azimuth": azimuth,
            "elevation": 10.0, "zoom": 1.2, "size": [size, size]}


async def wait_for(predicate: Any, timeout: float) -> bool:
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.01)
    return False


async def session_bench(web: WebServer, cookies: dict[str, str], session_id: str, study: str,
                        series: str, args: argparse.Namespace, opened_at: float) -> None:
    presenter = Viewer(web.url, cookies["ivanova"], "ivanova")
    followers = [Viewer(web.url, cookies[FOLLOWERS[i % len(FOLLOWERS)]], f"f{i}")
                 for i in range(args.followers)]
    for viewer in (presenter, *followers):
        await viewer.connect()
        answer = await viewer.call("session:join", {"session_id": session_id})
        assert answer["ok"], answer
    for viewer in followers:
        assert (await viewer.call("session:render_follow", {"session_id": session_id,
                                                            "views": ["3d"]}))["ok"]
    print("\n## preparing and the first frame")
    assert await wait_for(lambda: "prepared for rendering" in web.log, 600), "never prepared"
    line = next(x for x in web.log.splitlines() if "prepared for rendering" in x)
    print(f"prepared when the session opened: {line.split('prepared for rendering in ')[-1]} "
          f"(build + ray caster state; the session was opened "
          f"{time.perf_counter() - opened_at:.1f} s before this line was read)")
    sent = time.perf_counter()
    await presenter.call("view:change", {"session_id": session_id, "kind": "view.volume",
                                         "state": volume(study, series, 0.0, args.frame),
                                         "final": True})
    assert await wait_for(lambda: all(f.frames for f in followers), 60)
    first = [f.frames[0] for f in followers]
    print(f"first 3D frame of the session ({args.frame}x{args.frame}, CT bone, final) at all "
          f"{len(followers)} followers: {(max(t for t, _ in first) - sent) * 1000:.0f} ms after "
          f"the presenter's change (build_ms {first[0][1]['build_ms']}, worker "
          f"{first[0][1]['render_ms']:.0f} ms)")
    await asyncio.sleep(1.0)

    print(f"\n## orbiting: {args.hz:g} changes/s for {args.seconds:g} s, "
          f"{len(followers)} followers acknowledging every frame")
    for viewer in (presenter, *followers):
        viewer.frames.clear()
        viewer.changes.clear()
    send_time: dict[float, float] = {}
    busy0, wall0 = machine_cpu(), time.monotonic()
    started = time.perf_counter()
    step = 0
    while time.perf_counter() - started < args.seconds:
        step += 1
        azimuth = 3.0 * step
        send_time[azimuth] = time.perf_counter()
        await presenter.client.emit("view:change", {
            "session_id": session_id, "kind": "view.volume",
            "state": volume(study, series, azimuth, args.frame)}, namespace=NS)
        await asyncio.sleep(max(0.0, started + step / args.hz - time.perf_counter()))
    stopped = time.perf_counter()
    await asyncio.sleep(2.0)
    busy = (machine_cpu() - busy0) / (time.monotonic() - wall0)
    seq_sent = {c["seq"]: send_time.get(c["payload"]["state"]["azimuth"])
                for _, c in presenter.changes if c["kind"] == "view.volume"}
    rates, latencies, sizes = [], [], []
    for viewer in followers:
        interactive = [(t, f) for t, f in viewer.frames
                       if f["quality"] == "interactive" and t <= stopped + 0.1]
        rates.append(len(interactive) / (stopped - started))
        for t, f in interactive:
            when = seq_sent.get(f["seq"])
            if when is not None:
                latencies.append((t - when) * 1000)
        sizes.append(sum(len(f["image"]) for _, f in viewer.frames) / (stopped - started))
    all_widths = [f["width"] for t, f in followers[0].frames
                  if f["quality"] == "interactive" and t <= stopped + 0.1]
    widths = sorted(set(all_widths))
    worker = [f["render_ms"] for t, f in followers[0].frames
              if f["quality"] == "interactive" and t <= stopped + 0.1]
    print(f"frames/s reaching each follower: min {min(rates):.1f}  median "
          f"{statistics.median(rates):.1f}  max {max(rates):.1f}; presenter change -> follower "
          f"frame {ms(latencies)}; {statistics.median(sizes) / 1024:.0f} KiB/s per follower; "
          f"interactive frames {widths[0] if widths else 0}-{widths[-1] if widths else 0} px "
          f"wide (adaptive, median {statistics.median(all_widths or [0]):.0f}); {step} changes "
          f"sent, "
          f"{len(seq_sent)} after coalescing; machine busy {busy:.2f} of "
          f"{len(os.sched_getaffinity(0))} cores; worker time per interactive frame median "
          f"{statistics.median(worker or [0.0]):.1f} ms")
    last_sent = max(send_time.values())

    def finals(viewer: Viewer) -> list[tuple[float, dict[str, Any]]]:
        return [(t, f) for t, f in viewer.frames if f["quality"] == "final" and t > last_sent]

    if await wait_for(lambda: all(finals(f) for f in followers), 60):
        arrived = max(finals(f)[0][0] for f in followers)
        final = finals(followers[0])[0][1]
        print(f"full-quality frame once the presenter stopped: {final['width']}x"
              f"{final['height']} at all {len(followers)} followers "
              f"{(arrived - last_sent) * 1000:.0f} ms after the last change (worker "
              f"{final['render_ms']:.0f} ms)")
    else:
        print("no full-quality frame reached every follower within 60 s of the last change")

    print("\n## oblique 10 mm slab MIP, 512 px, through the shared stream")
    for viewer in followers:
        assert (await viewer.call("session:render_follow", {"session_id": session_id,
                                                            "views": ["mpr:oblique"]}))["ok"]
        viewer.frames.clear()
    render, arrive = [], []
    for n in range(10):
        state = {"study_uid": study, "series_uid": series, "point": [0.0, 0.0, float(n)],
                 "slab": 10.0, "mode": "mip", "window": [300.0, 1500.0],
                 "panes": {"oblique": {"orientation": "oblique", "normal": [0.0, 0.5, 0.866],
                                       "size": 512}}}
        sent = time.perf_counter()
        count = len(followers[0].frames)
        await presenter.call("view:change", {"session_id": session_id, "kind": "view.mpr",
                                             "state": state, "final": True})
        assert await wait_for(lambda c=count: all(len(f.frames) > c for f in followers), 30)
        last = [f.frames[-1] for f in followers]
        render.append(last[0][1]["render_ms"])
        arrive.append((max(t for t, _ in last) - sent) * 1000)
        await asyncio.sleep(0.3)
    print(f"worker time per frame (reslice + window + JPEG): {ms(render)}; presenter change -> "
          f"all followers {ms(arrive)}")
    for viewer in (presenter, *followers):
        await viewer.client.disconnect()


async def alone_bench(web: WebServer, cookie: str, series: str, args: argparse.Namespace
                      ) -> None:
    print("\n## for comparison: one viewer alone, its own render:subscribe stream")
    viewer = Viewer(web.url, cookie, "alone")
    await viewer.connect()
    answer = await viewer.call("render:subscribe", {
        "view": "3d", "series_uid": series, "kind": "volume",
        "params": {"preset": "ct-bone", "elevation": 10, "zoom": 1.2,
                   "size": [args.frame, args.frame]}}, namespace="/")
    assert answer["ok"], answer
    assert await wait_for(lambda: bool(viewer.frames), 120)
    viewer.frames.clear()
    sent: dict[int, float] = {}
    started = time.perf_counter()
    seq = 0
    while time.perf_counter() - started < args.seconds:
        seq += 1
        sent[seq] = time.perf_counter()
        await viewer.client.emit("render:update", {"view": "3d", "seq": seq,
                                                   "params": {"azimuth": 3.0 * seq}})
        await asyncio.sleep(max(0.0, started + seq / args.hz - time.perf_counter()))
    stopped = time.perf_counter()
    await asyncio.sleep(1.0)
    interactive = [(t, f) for t, f in viewer.frames if f["quality"] == "interactive"]
    latencies = [(t - sent[f["seq"]]) * 1000 for t, f in interactive if f["seq"] in sent]
    print(f"one viewer alone: {len(interactive) / (stopped - started):.1f} frames/s; update -> "
          f"frame {ms(latencies)}")
    await viewer.client.disconnect()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--size", type=int, default=512, help="rows and columns of the CT")
    parser.add_argument("--frame", type=int, default=512, help="3D frame size")
    parser.add_argument("--followers", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--hz", type=float, default=30.0)
    args = parser.parse_args()
    print_machine(f"live consilium shared 3D: {args.slices}x{args.size}x{args.size} CT, "
                  f"{args.followers} followers, one render worker")
    with tempfile.TemporaryDirectory(prefix="consilium-bench-live-render-") as tmp:
        base = Path(tmp)
        study_spec = StudySpec(PatientSpec("BENCH-LIVE3D", "Live^Shared"), "20261204")
        paths = write_ct_series(study_spec, base / "ct", slices=args.slices, rows=args.size,
                                columns=args.size, uid_seed="bench-live-render")
        first = dcmread(paths[0], stop_before_pixels=True)
        study, series = str(first.StudyInstanceUID), str(first.SeriesInstanceUID)
        env = {"CONSILIUM_IDENTITY_LOGIN_ATTEMPTS_PER_MINUTE": "1000"}
        subprocess.run([str(CONSILIUM), "import", "--config", str(CONFIG), "--data-dir",
                        str(base / "var"), "--institution", "city-hospital", "--quiet",
                        str(base / "ct")], check=True, capture_output=True)
        web = WebServer(base / "var", extra_env=env).start()
        try:
            cookies = {who: web.login(who).cookies["consilium_session"]
                       for who in ("ivanova", *FOLLOWERS)}
            chair = httpx.Client(base_url=web.url, timeout=60)
            chair.cookies.set("consilium_session", cookies["ivanova"])

            def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
                answer = chair.post(path, json=body, headers={"X-CSRF-Token": csrf_of(chair)})
                answer.raise_for_status()
                return dict(answer.json())

            case = post("/api/cases", {"question": "3D", "study_uids": [study],
                                       "target_institution": "regional-center"})
            post(f"/api/cases/{case['id']}/submit", {})
            opened_at = time.perf_counter()
            session = post(f"/api/cases/{case['id']}/consilia", {"invitees": ["dev:petrov"]})
            asyncio.run(session_bench(web, cookies, session["id"], study, series, args,
                                      opened_at))
            asyncio.run(alone_bench(web, cookies["kuznetsova"], series, args))
        finally:
            web.stop()
    print(f"# load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
