"""Server-side 3-D as a service, end to end over HTTP and Socket.IO, on a 512x512x300 CT.

A real ``consilium serve`` (one render worker, the default) with the series imported by
``consilium import``; the client is this script on the same machine (loopback), authenticated
with a bearer token of the demo identity provider. Measured:

* **first volume frame, cold**: the first request after start, a full-quality 512x512 CT bone
  frame: render worker spawn + volume build from the 300 files + ray caster set-up with its
  gradients + the frame (the ``Server-Timing`` header splits build and render);
  then warm full-quality frames;
* **interactive rotation over Socket.IO**: the client sends camera updates at ``--update-hz``
  (3 degrees each) for ``--rotate-seconds`` and acknowledges every frame; reported: interactive
  frames per second received, update -> frame latency (from sending an update to receiving the
  frame of that update), updates dropped as stale, and the time from the last update to the
  full-quality frame; for CT bone and MIP;
* **MPR over HTTP**: one 512x512 frame per request (axial/coronal/sagittal, oblique, 10 mm
  slabs), JPEG; client round trip and server-side time (``Server-Timing: total``, from the
  request to the answer: policy, index lookup, queue, reslice, window, encode;
  target 30 ms or less) and the worker's part (``render``);
* **MPR as a crosshair drag over Socket.IO**: frames per second of an axial stream whose point
  moves at ``--update-hz``;
* an isosurface (bone, step 2) as STL; the render worker's resident memory.

The machine is shared with other work: its load average is printed, and the CPU time the
whole machine spent during the run is compared to what the server used.

    python bench/render_service.py [--slices 300] [--size 512] [--rotate-seconds 8]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from common import CONFIG, CONSILIUM, ROOT, machine_cpu, percentile, print_machine

sys.path.insert(0, str(ROOT))  # tests.webserver: the same server start as the tests

import httpx
import socketio
from joserfc import jwt
from tests.webserver import WebServer

from consilium.synthetic import PatientSpec, StudySpec, write_ct_series

MB = 2**20


def ms(values: list[float]) -> str:
    return (f"median {statistics.median(values):7.1f} ms  p95 {percentile(values, 95):7.1f} ms"
            f"  (n={len(values)})")


def bearer(web: WebServer) -> str:
    key = web.signing_key()
    now = int(time.time())
    claims = {"iss": f"{web.url}/dev-idp", "aud": "consilium", "sub": "bench-render",
              "iat": now, "exp": now + 7200, "institution": "city-hospital",
              "roles": ["consultant"], "name": "Render benchmark"}
    return str(jwt.encode({"alg": "RS256", "kid": key.kid}, claims, key, ["RS256"]))


def server_timing(response: httpx.Response) -> dict[str, float]:
    out: dict[str, float] = {}
    for part in response.headers.get("server-timing", "").split(","):
        name, _, value = part.strip().partition(";dur=")
        if value:
            out[name] = float(value)
    return out


def _stat(pid: int | str) -> list[str]:
    text = Path(f"/proc/{pid}/stat").read_text()
    return [text[text.index("(") + 1 : text.rindex(")")], *text[text.rindex(")") + 2 :].split()]


def server_cpu(pid: int) -> float:
    """CPU seconds of the server process and its children (the render worker)."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = _stat(stat.parent.name)
        except (OSError, ValueError):
            continue
        if int(stat.parent.name) == pid or int(fields[2]) == pid:
            total += sum(int(f) for f in fields[12:16])  # utime stime cutime cstime
    return total / os.sysconf("SC_CLK_TCK")


def worker_rss(web: WebServer) -> int:
    assert web.proc is not None
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
            ppid = int(text[text.rindex(")") + 2 :].split()[1])
            if ppid == web.proc.pid and "(render-0)" in text:
                status = (stat.parent / "status").read_text()
                line = next(x for x in status.splitlines() if x.startswith("VmRSS:"))
                return int(line.split()[1]) * 1024
        except (OSError, ValueError, StopIteration):
            continue
    return 0


def bench_cold_and_warm(client: httpx.Client, base: str, size: int) -> None:
    print("\n## first volume frame (cold: worker spawn + build + gradients + frame)")
    params = {"preset": "ct-bone", "azimuth": 20, "elevation": 10, "zoom": 1.2, "size": size}
    started = time.perf_counter()
    answer = client.get(f"{base}/volume", params=params)
    wall = (time.perf_counter() - started) * 1000
    answer.raise_for_status()
    timing = server_timing(answer)
    total, build, render = (timing.get(k, 0.0) for k in ("total", "build", "render"))
    print(f"cold first {size}x{size} CT bone frame: {wall:.0f} ms at the client; server "
          f"total {total:.0f} ms = build {build:.0f} ms + render (ray caster set-up, gradients, "
          f"frame, JPEG) {render:.0f} ms + worker spawn, lookup, transport "
          f"{total - build - render:.0f} ms")
    warm: list[float] = []
    for n in range(5):
        started = time.perf_counter()
        client.get(f"{base}/volume", params={**params, "azimuth": 25 + 5 * n}).raise_for_status()
        warm.append((time.perf_counter() - started) * 1000)
    print(f"warm full-quality {size}x{size} frame, HTTP round trip: {ms(warm)}")
    started = time.perf_counter()
    client.get(f"{base}/volume", params={**params, "preset": "ct-mip"}).raise_for_status()
    print(f"first MIP frame (unshaded, no gradients): "
          f"{(time.perf_counter() - started) * 1000:.0f} ms")


def bench_rotation(web: WebServer, token: str, series: str, preset: str, size: int,
                   seconds: float, hz: float) -> None:
    client = socketio.Client(reconnection=False)
    frames: list[tuple[float, int, str, int]] = []
    widths: list[int] = []
    first = threading.Event()
    final = threading.Event()
    last_seq = [-1]

    @client.on("render:frame")  # type: ignore[untyped-decorator]
    def on_frame(frame: dict[str, Any]) -> bool:
        frames.append((time.perf_counter(), frame["seq"], frame["quality"], len(frame["image"])))
        if frame["quality"] == "interactive":
            widths.append(frame["width"])
        if frame["seq"] == 0:
            first.set()
        if frame["quality"] == "final" and frame["seq"] == last_seq[0]:
            final.set()
        return True

    client.connect(web.url, transports=["websocket"], auth={"token": token}, wait_timeout=10)
    try:
        ack = client.call("render:subscribe", {
            "view": "3d", "series_uid": series, "kind": "volume",
            "params": {"preset": preset, "size": size, "elevation": 10, "zoom": 1.2}},
            timeout=120)
        assert ack["ok"], ack
        assert first.wait(120), "no first frame"
        frames.clear()
        sent: dict[int, float] = {}
        period = 1.0 / hz
        started = time.perf_counter()
        seq = 0
        while time.perf_counter() - started < seconds:
            seq += 1
            sent[seq] = time.perf_counter()
            client.emit("render:update", {"view": "3d", "seq": seq,
                                          "params": {"azimuth": 3.0 * seq}})
            time.sleep(max(0.0, started + seq * period - time.perf_counter()))
        last_seq[0] = seq
        stopped = time.perf_counter()
        final.wait(30)
        interactive = [f for f in frames if f[2] == "interactive"]
        fps = len(interactive) / (stopped - started)
        latency = [(t - sent[s]) * 1000 for t, s, q, _ in interactive]
        sharp = [f for f in frames if f[2] == "final" and f[1] == seq]
        after = (sharp[0][0] - stopped) * 1000 if sharp else float("nan")
        kib = statistics.mean(f[3] for f in interactive) / 1024 if interactive else 0
        shown = f"{min(widths)}-{max(widths)}" if widths else "-"
        print(f"{preset:15} {size}x{size} (interactive {shown} px wide, median "
              f"{statistics.median(widths) if widths else 0:.0f}): "
              f"{fps:5.1f} frames/s for {seq} updates at {hz:g}/s ({seq - len(interactive)} "
              f"dropped as stale); update -> frame {ms(latency)}; last update -> sharp frame "
              f"{after:.0f} ms; {kib:.0f} KiB per interactive frame")
    finally:
        client.disconnect()


def bench_mpr_stream(web: WebServer, token: str, series: str, seconds: float, hz: float
                     ) -> None:
    client = socketio.Client(reconnection=False)
    frames: list[tuple[float, int, str]] = []
    sizes: set[tuple[int, int]] = set()
    first = threading.Event()

    @client.on("render:frame")  # type: ignore[untyped-decorator]
    def on_frame(frame: dict[str, Any]) -> bool:
        frames.append((time.perf_counter(), frame["seq"], frame["quality"]))
        sizes.add((frame["width"], frame["height"]))
        first.set()
        return True

    client.connect(web.url, transports=["websocket"], auth={"token": token}, wait_timeout=10)
    try:
        ack = client.call("render:subscribe", {"view": "axial", "series_uid": series,
                                               "kind": "mpr", "params": {"size": 512}},
                          timeout=60)
        assert ack["ok"], ack
        z0, z1 = ack["info"]["bounds"]["min"][2], ack["info"]["bounds"]["max"][2]
        assert first.wait(60)
        frames.clear()
        sent: dict[int, float] = {}
        started = time.perf_counter()
        seq = 0
        while time.perf_counter() - started < seconds:
            seq += 1
            z = z0 + (z1 - z0) * ((seq * 0.01) % 1.0)
            sent[seq] = time.perf_counter()
            client.emit("render:update", {"view": "axial", "seq": seq,
                                          "params": {"point": [0.0, 0.0, z]}})
            time.sleep(max(0.0, started + seq / hz - time.perf_counter()))
        stopped = time.perf_counter()
        time.sleep(0.5)
        during = [f for f in frames if f[2] == "interactive"]
        latency = [(t - sent[s]) * 1000 for t, s, _ in during]
        shown = ", ".join(f"{w}x{h}" for w, h in sorted(sizes))
        print(f"axial crosshair drag ({shown}): {len(during) / (stopped - started):5.1f} "
              f"frames/s for {seq} updates at {hz:g}/s; update -> frame {ms(latency)}")
    finally:
        client.disconnect()


def bench_mpr_http(client: httpx.Client, base: str, repeats: int) -> None:
    print("\n## MPR over HTTP, 512x512 JPEG (server: Server-Timing total = request to answer; "
          "worker = reslice + window + encode)")
    cases: list[tuple[str, dict[str, Any]]] = [
        ("axial", {"orientation": "axial"}),
        ("coronal", {"orientation": "coronal"}),
        ("sagittal", {"orientation": "sagittal"}),
        ("oblique", {"orientation": "oblique", "normal": "0.35,-0.5,0.8"}),
        ("axial slab MIP 10 mm", {"orientation": "axial", "slab": 10, "mode": "mip"}),
        ("oblique slab MIP 10 mm", {"orientation": "oblique", "normal": "0.35,-0.5,0.8",
                                    "slab": 10, "mode": "mip"}),
        ("  same, interactive", {"orientation": "oblique", "normal": "0.35,-0.5,0.8",
                                 "slab": 10, "mode": "mip", "quality": "interactive"}),
    ]
    for name, params in cases:
        client.get(f"{base}/mpr", params={**params, "size": 512}).raise_for_status()
        wall: list[float] = []
        total: list[float] = []
        worker: list[float] = []
        for n in range(repeats):
            point = f"0,0,{-60 + 120 * n / max(1, repeats - 1):.2f}"  # a new slice each time
            started = time.perf_counter()
            answer = client.get(f"{base}/mpr", params={**params, "size": 512, "point": point})
            wall.append((time.perf_counter() - started) * 1000)
            answer.raise_for_status()
            timing = server_timing(answer)
            total.append(timing["total"])
            worker.append(timing["render"])
        size = answer.headers["x-frame-size"]
        print(f"{name:23} {size:>8}  server {ms(total)} | worker median "
              f"{statistics.median(worker):5.1f} ms | round trip median "
              f"{statistics.median(wall):5.1f} ms")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--size", type=int, default=512, help="rows and columns of the CT")
    parser.add_argument("--frame", type=int, default=512, help="3-D frame size")
    parser.add_argument("--rotate-seconds", type=float, default=8.0)
    parser.add_argument("--update-hz", type=float, default=60.0)
    parser.add_argument("--mpr-repeats", type=int, default=30)
    args = parser.parse_args()
    print_machine(f"render service: {args.slices}x{args.size}x{args.size} CT over HTTP and "
                  "Socket.IO, one render worker")
    with tempfile.TemporaryDirectory(prefix="consilium-bench-render-") as tmp:
        base_dir = Path(tmp)
        started = time.perf_counter()
        study = StudySpec(PatientSpec("BENCH-3DS", "Phantom^Service"), "20240301")
        paths = write_ct_series(study, base_dir / "ct", slices=args.slices, rows=args.size,
                                columns=args.size, uid_seed="bench-render-service")
        subprocess.run([str(CONSILIUM), "import", "--config", str(CONFIG), "--data-dir",
                        str(base_dir / "var"), "--institution", "city-hospital", "--quiet",
                        str(base_dir / "ct")], check=True, capture_output=True)
        from pydicom import dcmread

        series = str(dcmread(paths[0], stop_before_pixels=True).SeriesInstanceUID)
        print(f"# data: generated and imported in {time.perf_counter() - started:.1f} s "
              "(not measured)", flush=True)
        web = WebServer(base_dir / "var").start()
        assert web.proc is not None
        busy0, wall0, server0 = machine_cpu(), time.monotonic(), server_cpu(web.proc.pid)
        try:
            token = bearer(web)
            client = httpx.Client(base_url=web.url, timeout=300,
                                  headers={"Authorization": f"Bearer {token}"})
            base = f"/api/render/series/{series}"
            bench_cold_and_warm(client, base, args.frame)
            print(f"render worker RSS after the bone and MIP frames: {worker_rss(web) / MB:.0f} "
                  f"MiB (voxels {args.slices * args.size * args.size * 2 / MB:.0f} MiB)")
            print("\n## interactive rotation over Socket.IO (every frame acknowledged)")
            for preset in ("ct-bone", "ct-mip"):
                bench_rotation(web, token, series, preset, args.frame, args.rotate_seconds,
                               args.update_hz)
            bench_mpr_http(client, base, args.mpr_repeats)
            print("\n## MPR over Socket.IO")
            bench_mpr_stream(web, token, series, args.rotate_seconds / 2, args.update_hz)
            print("\n## isosurface")
            started = time.perf_counter()
            stl = client.get(f"{base}/isosurface.stl", params={"level": 300, "step": 2})
            stl.raise_for_status()
            print(f"bone (300 HU, step 2): {int(stl.headers['x-triangles']):,} triangles, "
                  f"{len(stl.content) / MB:.0f} MiB STL in "
                  f"{(time.perf_counter() - started) * 1000:.0f} ms "
                  f"(worker {server_timing(stl)['render']:.0f} ms)")
            print(f"render worker RSS at the end: {worker_rss(web) / MB:.0f} MiB")
        finally:
            wall = time.monotonic() - wall0
            busy = machine_cpu() - busy0
            used = server_cpu(web.proc.pid) - server0
            web.stop()
        print(f"\n# machine busy {busy:.0f} CPU-s over {wall:.0f} s on "
              f"{len(os.sched_getaffinity(0))} cores; the server (web + worker) used {used:.0f} "
              "CPU-s: the rest was this client and other work on the machine")
    return 0


if __name__ == "__main__":
    sys.exit(main())
