"""Shared pieces of the benchmarks: the machine, free ports, a Consilium and an Orthanc process.

Both servers are started by the benchmark itself, each with a fresh data folder, on free
loopback ports. dcmtk tools and Orthanc run with ``TCP_NODELAY=1`` in their environment: without
it dcmtk leaves Nagle's algorithm on and loses 40-50 ms per message on loopback (see
shared/FIELD-NOTES.md), which would measure Nagle, not the archives.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "config" / "consilium.toml"
DCMTK = Path("/usr/bin")  # the venv has pynetdicom's storescu/findscu: always use dcmtk's
CONSILIUM = Path(sys.executable).with_name("consilium")
# To measure a patched server without touching the checkout, e.g.
# CONSILIUM_BENCH_CMD="python /tmp/scratch/consilium_patched.py" (a script that patches, then
# calls consilium.cli.main); split on whitespace
CONSILIUM_CMD = os.environ.get("CONSILIUM_BENCH_CMD", str(CONSILIUM)).split()
ORTHANC = Path(os.environ.get("ORTHANC", "/usr/sbin/Orthanc"))

# Calling AE titles configured for the "city-hospital" institution in config/consilium.toml
STORE_AE = "STORESCU"
FIND_AE = "FINDSCU"
INSTITUTION = "city-hospital"


def nodelay_env(**extra: str) -> dict[str, str]:
    """The environment for dcmtk tools and Orthanc: Nagle off (dcmtk reads TCP_NODELAY)."""
    env = dict(os.environ, TCP_NODELAY="1", **extra)
    env.pop("CONSILIUM_CONFIG", None)
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, timeout: float = 60.0, proc: subprocess.Popen[Any] | None = None
                  ) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before listening on {port}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {port} after {timeout}s")


def _stop(proc: subprocess.Popen[Any] | None, timeout: float = 30.0) -> bool:
    """SIGTERM, then SIGKILL of the process group after ``timeout``; True if it stopped in time.

    Servers are started with ``start_new_session=True``, so the group holds exactly the
    processes this benchmark started (server, its worker processes, multiprocessing helpers).
    """
    if proc is None:
        return True
    clean = True
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            clean = False
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)  # leftovers of the group, if any
    proc.wait()
    return clean


# -- the machine -------------------------------------------------------------------------------


def _tool_version(cmd: Sequence[str]) -> str:
    try:
        out = subprocess.run(list(cmd), capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return "?"
    return out.strip().splitlines()[0] if out.strip() else "?"


def cpu_model() -> str:
    fields: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
    except OSError:
        return platform.processor() or "?"
    name = fields.get("model name", "?")
    extra = []
    if "cpu family" in fields and "model" in fields:
        extra.append(f"family {fields['cpu family']} model {fields['model']}")
    if "cpu MHz" in fields:
        extra.append(f"{float(fields['cpu MHz']):.0f} MHz")
    if "hypervisor" in fields.get("flags", "").split():
        extra.append("virtual machine")
    return f"{name} ({', '.join(extra)})" if extra else name


def machine_info() -> dict[str, str]:
    import pydicom
    import pynetdicom

    return {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "nproc": str(len(os.sched_getaffinity(0))),
        "cpu": cpu_model(),
        "memory": f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.1f} GiB",
        "load average": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "pydicom / pynetdicom": f"{pydicom.__version__} / {pynetdicom.__version__}",
        "dcmtk": _tool_version([str(DCMTK / "storescu"), "--version"]).strip("$ "),
        "orthanc": _tool_version([str(ORTHANC), "--version"]),
        "consilium checkout": checkout_state(),
    }


def checkout_state() -> str:
    """Commit of the checkout and how many files of platform/ differ from it (others may be
    editing the platform while a benchmark runs: the numbers belong to that state)."""
    try:
        head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "platform"],
                               capture_output=True, text=True, timeout=10).stdout.splitlines()
    except (OSError, subprocess.SubprocessError):
        return "?"
    return f"{head or '?'} + {len(dirty)} changed/new files under platform/"


def print_machine(title: str) -> dict[str, str]:
    info = machine_info()
    print(f"# {title}")
    for key, value in info.items():
        print(f"#   {key:22} {value}")
    print(flush=True)
    return info


# -- statistics --------------------------------------------------------------------------------


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty sample."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100.0 * len(ordered) + 0.5)))
    return float(ordered[rank - 1])


# -- CPU accounting ------------------------------------------------------------------------------

_TICK = os.sysconf("SC_CLK_TCK")


def group_cpu(pgid: int) -> float:
    """CPU seconds (user + system, reaped children included) of a process group's processes."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:
            total += sum(int(f) for f in fields[11:15])
    return total / _TICK


def machine_cpu() -> float:
    """CPU seconds spent busy by the whole machine so far (all cores; idle and iowait excluded)."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
    return (sum(values) - values[3] - values[4]) / _TICK


# -- Consilium ---------------------------------------------------------------------------------


@dataclass
class Consilium:
    """``consilium dicom`` (or, with ``serve=True``, ``consilium serve`` as users run it: web
    side, demo data and the configuration's DICOM workers) on a fresh data folder with the
    repository's configuration. ``workers`` 0 keeps the configuration's count."""

    data_dir: Path
    workers: int = 1
    ae_title: str = "CONSILIUM"
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    stopped_cleanly: bool = True
    serve: bool = False
    http_port: int = field(default_factory=free_port)

    @property
    def log_path(self) -> Path:
        return self.data_dir.parent / f"{self.data_dir.name}.consilium.log"

    def start(self) -> Consilium:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        env.pop("CONSILIUM_CONFIG", None)
        command = [*CONSILIUM_CMD, "serve" if self.serve else "dicom", "--config", str(CONFIG),
                   "--data-dir", str(self.data_dir), "--dicom-port", str(self.port),
                   "--ae-title", self.ae_title]
        if self.serve:
            command += ["--http-port", str(self.http_port)]
        if self.workers:
            command += ["--dicom-workers", str(self.workers)]
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
            )
        wait_for_port(self.port, timeout=600, proc=self.proc)  # serve seeds demo data first
        # with workers > 1 every process must be listening before we measure
        workers = self.workers or _configured_workers()
        deadline = time.monotonic() + 60
        while self.log.count(" listening on ") < workers:
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError(f"Consilium workers did not start:\n{self.log}")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        # it stops its worker processes within about 2 s; after 5 s the process group is killed
        # (and the run says so)
        self.stopped_cleanly = _stop(self.proc, timeout=5.0)
        self.proc = None

    def pids(self) -> list[int]:
        """The server process and its worker processes (for profiling)."""
        assert self.proc is not None
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        extra = [int(p) for p in children.read_text().split()] if children.exists() else []
        return [self.proc.pid, *extra]

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def _db(self) -> sqlite3.Connection:
        return sqlite3.connect(f"file:{self.data_dir / 'consilium.db'}?mode=ro", uri=True)

    def count(self, table: str = "instance") -> int:
        with self._db() as db:
            return int(db.execute(f"select count(*) from {table}").fetchone()[0])

    def count_study(self, study_uid: str) -> int:
        """Instances indexed in one study (``serve`` also holds the demo studies)."""
        with self._db() as db:
            row = db.execute("select num_instances from study where study_uid = ?",
                             (study_uid,)).fetchone()
        return int(row[0]) if row else 0

    def transfer_syntaxes(self, study_uid: str | None = None) -> list[str]:
        sql = "select distinct transfer_syntax_uid from instance"
        params: tuple[str, ...] = ()
        if study_uid is not None:  # the instances of one study only (serve has demo data too)
            sql += (" join series on series.id = instance.series_pk join study on study.id ="
                    " series.study_pk where study.study_uid = ?")
            params = (study_uid,)
        with self._db() as db:
            rows = db.execute(sql, params).fetchall()
        return sorted(r[0] for r in rows)


def _configured_workers() -> int:
    import tomllib

    return int(tomllib.loads(CONFIG.read_text()).get("dicom", {}).get("workers", 1))


# -- Orthanc -----------------------------------------------------------------------------------


@dataclass
class Orthanc:
    """Orthanc with a temporary configuration; durability settings left at Orthanc's defaults
    (SyncStorageArea true: fsync of every stored file)."""

    work_dir: Path
    extra_config: dict[str, Any] = field(default_factory=dict)
    ae_title: str = "ORTHANC"
    port: int = field(default_factory=free_port)
    http_port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    def config(self) -> dict[str, Any]:
        cfg: dict[str, Any] = {
            "Name": "consilium-bench",
            "StorageDirectory": str(self.work_dir / "storage"),
            "IndexDirectory": str(self.work_dir / "index"),
            "StorageCompression": False,
            "DicomServerEnabled": True,
            "DicomAet": self.ae_title,
            "DicomPort": self.port,
            "DicomCheckCalledAet": False,
            "DicomAlwaysAllowEcho": True,
            "DicomAlwaysAllowStore": True,
            "DicomAlwaysAllowFind": True,
            "HttpServerEnabled": True,
            "HttpPort": self.http_port,
            "RemoteAccessAllowed": False,  # loopback only
            "AuthenticationEnabled": False,
            "Plugins": [],
            # Orthanc's defaults, spelt out: durable storage, no transcoding on ingest
            "SyncStorageArea": True,
            "OverwriteInstances": False,
        }
        cfg.update(self.extra_config)
        return cfg

    @property
    def log_path(self) -> Path:
        return self.work_dir / "orthanc.log"

    def start(self) -> Orthanc:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        config_path = self.work_dir / "orthanc.json"
        config_path.write_text(json.dumps(self.config(), indent=2))
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [str(ORTHANC), str(config_path)], stdout=log, stderr=subprocess.STDOUT,
                env=nodelay_env(), cwd=self.work_dir, start_new_session=True,
            )
        wait_for_port(self.http_port, proc=self.proc)
        wait_for_port(self.port, proc=self.proc)
        deadline = time.monotonic() + 60
        while True:
            try:
                self.rest("GET", "/system")
                return self
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def stop(self) -> None:
        _stop(self.proc)
        self.proc = None

    def rest(self, method: str, path: str, body: bytes | None = None,
             content_type: str = "application/json") -> Any:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.http_port}{path}", data=body, method=method,
            headers={"Content-Type": content_type} if body is not None else {},
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            data = response.read()
        return json.loads(data) if data else None

    def count(self, what: str = "CountInstances") -> int:
        return int(self.rest("GET", "/statistics")[what])

    def transfer_syntaxes(self, sample: int = 3) -> list[str]:
        ids = self.rest("GET", f"/instances?since=0&limit={sample}")
        found = set()
        for instance_id in ids:
            request = urllib.request.Request(
                f"http://127.0.0.1:{self.http_port}/instances/{instance_id}/metadata/TransferSyntax"
            )
            with urllib.request.urlopen(request, timeout=30) as response:
                found.add(response.read().decode().strip())
        return sorted(found)


def fresh_dir(parent: Path, name: str) -> Path:
    path = parent / name
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path
