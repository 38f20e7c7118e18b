"""Shared fixtures: real Consilium processes on free ports, dcmtk tools, pydicom's corpus."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "config" / "consilium.toml"
DCMTK = Path("/usr/bin")  # the venv also has pynetdicom's storescu/findscu: always use dcmtk's
CONSILIUM = Path(sys.executable).with_name("consilium")


def free_port() -> int:
    """A port free now; another process may take it before it is used: where the test starts
    the listener itself, prefer :func:`reserved_port` (or port 0 and asking the listener)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def reserved_port() -> Iterator[int]:
    """A port held for a peer the test starts later (dcmtk's storescp, movescu's receiver):
    a bound, non-listening socket with SO_REUSEADDR keeps the system from handing the port to
    anyone else (neither bind(0) nor an outgoing connection picks a port with a bound socket),
    while dcmtk, which sets SO_REUSEADDR too, may still listen on it."""
    with socket.socket() as holder:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        holder.bind(("", 0))
        yield int(holder.getsockname()[1])


def wait_for_port(port: int, timeout: float = 90.0, proc: subprocess.Popen[bytes] | None = None
                  ) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {port} after {timeout}s")


def dcmtk(tool: str, *args: str, timeout: float = 300, check: bool = False
          ) -> subprocess.CompletedProcess[str]:
    """Run a dcmtk tool with Nagle off (see shared/FIELD-NOTES.md) and capture its output."""
    env = dict(os.environ, TCP_NODELAY="1")
    return subprocess.run([str(DCMTK / tool), *args], capture_output=True, text=True,
                          timeout=timeout, env=env, check=check, errors="replace")


_ANNOUNCED = re.compile(r"^DICOM: AE \S+ on port (\d+)$", re.MULTILINE)


@dataclass
class ConsiliumServer:
    """A ``consilium dicom`` process with its own data folder and port. ``dicom_port`` 0 (the
    default) lets the server bind a free port itself and announce it: no port picked here can
    be taken by another process in between. Each start writes its own log file."""

    data_dir: Path
    dicom_port: int = 0
    ae_title: str = "CONSILIUM"
    extra_env: dict[str, str] = field(default_factory=dict)
    workers: int = 1
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    def start(self, timeout: float = 120.0) -> ConsiliumServer:
        number = 1
        while (self.data_dir.parent / f"{self.data_dir.name}-{number}.log").exists():
            number += 1
        self.log_path = self.data_dir.parent / f"{self.data_dir.name}-{number}.log"
        env = dict(os.environ, **self.extra_env)
        env.pop("CONSILIUM_CONFIG", None)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [str(CONSILIUM), "dicom", "--config", str(CONFIG),
                 "--data-dir", str(self.data_dir), "--dicom-port", str(self.dicom_port),
                 "--ae-title", self.ae_title, "--dicom-workers", str(self.workers)],
                stdout=log, stderr=subprocess.STDOUT, env=env,
            )
        deadline = time.monotonic() + timeout
        while (announced := _ANNOUNCED.search(self.log)) is None:
            if self.proc.poll() is not None:
                raise RuntimeError(f"consilium dicom exited with {self.proc.returncode}:\n"
                                   f"{self.log[-3000:]}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"consilium dicom did not listen in {timeout} s")
            time.sleep(0.02)
        self.dicom_port = int(announced.group(1))
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.proc = None

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""

    def address(self) -> list[str]:
        return ["-aec", self.ae_title, "127.0.0.1", str(self.dicom_port)]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ConsiliumServer]:
    srv = ConsiliumServer(tmp_path / "var").start()
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def dcmtk_available() -> None:
    for tool in ("storescu", "findscu", "getscu", "movescu", "storescp", "echoscu"):
        if shutil.which(tool, path=str(DCMTK)) is None:
            pytest.fail(f"dcmtk's {tool} is missing: run .ci/run (apt-get install dcmtk)")


def pydicom_data_dir() -> Path:
    return Path(str(resources.files("pydicom") / "data"))


# -- helpers of the DIMSE end-to-end modules (roundtrip, find, bad input, crash safety) ---------

# storescu's proposal option that sends a file in its own transfer syntax: that syntax in its own
# presentation context (plus the uncompressed ones). getscu/movescu spell the preference "+x?".
STORESCU_PROPOSAL: dict[str, str] = {
    "1.2.840.10008.1.2.1": "-xe",  # Explicit VR Little Endian
    "1.2.840.10008.1.2": "-xi",  # Implicit VR Little Endian
    "1.2.840.10008.1.2.2": "-xb",  # Explicit VR Big Endian
    "1.2.840.10008.1.2.1.99": "-xd",  # Deflated Explicit VR Little Endian
    "1.2.840.10008.1.2.4.50": "-xy",  # JPEG Baseline
    "1.2.840.10008.1.2.4.51": "-xx",  # JPEG Extended
    "1.2.840.10008.1.2.4.70": "-xs",  # JPEG Lossless SV1
    "1.2.840.10008.1.2.4.80": "-xt",  # JPEG-LS Lossless
    "1.2.840.10008.1.2.4.81": "-xu",  # JPEG-LS Near-Lossless
    "1.2.840.10008.1.2.4.90": "-xv",  # JPEG 2000 Lossless
    "1.2.840.10008.1.2.4.91": "-xw",  # JPEG 2000
    "1.2.840.10008.1.2.5": "-xr",  # RLE Lossless
}


def storescu_statuses(output: str) -> dict[str, int | None]:
    """The C-STORE response status of every file a ``storescu -d`` run sent, by its path as
    storescu printed it; None for a file whose request got no response."""
    statuses: dict[str, int | None] = {}
    current: str | None = None
    for line in output.splitlines():
        if line.startswith("I: Sending file: "):
            current = line.removeprefix("I: Sending file: ").strip()
            statuses[current] = None
        elif current is not None and line.startswith("D: DIMSE Status"):
            statuses[current] = int(line.split(":", 2)[2].strip()[2:6], 16)
            current = None
    return statuses


def dcmtk_in(cwd: Path, tool: str, *args: str, timeout: float = 300
             ) -> subprocess.CompletedProcess[str]:
    """:func:`dcmtk` run in ``cwd`` (movescu's bit-preserving mode ignores ``-od``)."""
    env = dict(os.environ, TCP_NODELAY="1")
    return subprocess.run([str(DCMTK / tool), *args], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=cwd, errors="replace")


def institutions_env(ports: dict[str, int]) -> dict[str, str]:
    """``extra_env`` for :class:`ConsiliumServer`: the institutions of config/consilium.toml
    with the port of the named nodes replaced (e.g. ``{"MOVESCU": 40123}``)."""
    import json
    import tomllib

    institutions = tomllib.loads(CONFIG.read_text())["institutions"]
    for institution in institutions:
        for node in institution["nodes"]:
            if node["ae_title"] in ports:
                node["port"] = ports[node["ae_title"]]
    return {"CONSILIUM_INSTITUTIONS": json.dumps(institutions)}


def send_raw(port: int, files: list[Path], calling_ae: str = "STORESCU",
             with_find: bool = False, called_ae: str = "CONSILIUM"
             ) -> list[tuple[int | None, str]]:
    """C-STORE PS3.10 files with pynetdicom on one association, each file's bytes after its meta
    sent as they are (``STORE_SEND_CHUNKED_DATASET``): dcmtk refuses to send files it cannot
    parse, this does not. The request's SOP Class/Instance UIDs and the transfer syntax come
    from the file meta. A storage-only association is served on the archive's lean path;
    ``with_find`` also proposes Study Root MOVE (the name is historical: FIND is now served on
    the lean path too), which puts it on pynetdicom's path.
    Returns (status or None when no response came, error comment) per file."""
    from pynetdicom import AE, _config
    from pynetdicom.dsutils import split_dataset

    ae = AE(ae_title=calling_ae)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    pairs: dict[tuple[str, str], None] = {}
    for path in files:
        meta, _offset = split_dataset(path)
        pairs[(str(meta.MediaStorageSOPClassUID), str(meta.TransferSyntaxUID))] = None
    for sop_class, ts in pairs:
        ae.add_requested_context(sop_class, [ts])
    if with_find:
        ae.add_requested_context("1.2.840.10008.5.1.4.1.2.2.2")
    previous = _config.STORE_SEND_CHUNKED_DATASET
    _config.STORE_SEND_CHUNKED_DATASET = True
    try:
        assoc = ae.associate("127.0.0.1", port, ae_title=called_ae)
        if not assoc.is_established:
            raise ConnectionError(f"association refused or aborted (port {port})")
        results: list[tuple[int | None, str]] = []
        try:
            for message_id, path in enumerate(files, start=1):
                rsp = assoc.send_c_store(path, msg_id=message_id)
                status = int(rsp.Status) if "Status" in rsp else None
                results.append((status, str(rsp.get("ErrorComment", ""))))
        finally:
            if assoc.is_established:
                assoc.release()
        return results
    finally:
        _config.STORE_SEND_CHUNKED_DATASET = previous
