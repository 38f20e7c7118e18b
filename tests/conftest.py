"""Shared fixtures: real Consilium processes on free ports, dcmtk tools, pydicom's corpus."""

from __future__ import annotations

import os
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
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, timeout: float = 30.0, proc: subprocess.Popen[bytes] | None = None
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


@dataclass
class ConsiliumServer:
    """A ``consilium dicom`` process with its own data folder and port."""

    data_dir: Path
    dicom_port: int = field(default_factory=free_port)
    ae_title: str = "CONSILIUM"
    extra_env: dict[str, str] = field(default_factory=dict)
    workers: int = 1
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    def start(self) -> ConsiliumServer:
        self.log_path = self.data_dir.parent / f"{self.data_dir.name}-{self.dicom_port}.log"
        env = dict(os.environ, **self.extra_env)
        env.pop("CONSILIUM_CONFIG", None)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [str(CONSILIUM), "dicom", "--config", str(CONFIG),
                 "--data-dir", str(self.data_dir), "--dicom-port", str(self.dicom_port),
                 "--ae-title", self.ae_title, "--dicom-workers", str(self.workers)],
                stdout=log, stderr=subprocess.STDOUT, env=env,
            )
        wait_for_port(self.dicom_port, proc=self.proc)
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
