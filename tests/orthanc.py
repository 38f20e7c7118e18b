"""A real Orthanc (Debian's package, ``/usr/sbin/Orthanc``) for tests that need a hospital PACS:
a temporary JSON configuration and storage folder, free loopback ports, Nagle off."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import free_port, wait_for_port

ORTHANC = Path("/usr/sbin/Orthanc")
DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")  # orthanc-dicomweb


@dataclass
class Orthanc:
    """Orthanc acting as the PACS ``ae_title``; ``modalities`` are the peers it knows
    (AE title -> (host, port)): whoever may query it and where it may C-MOVE to."""

    work_dir: Path
    ae_title: str = "ORTHANC"
    modalities: dict[str, tuple[str, int]] = field(default_factory=dict)
    check_called_aet: bool = True  # reject associations addressed to another AE title
    dicomweb: bool = False  # load the DICOMweb plugin (server at /dicom-web/, and a client)
    dicomweb_servers: dict[str, dict[str, Any]] = field(default_factory=dict)  # its peers
    dicom_port: int = field(default_factory=free_port)
    http_port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    def config(self) -> dict[str, Any]:
        return {
            "Name": "consilium-test-pacs",
            "StorageDirectory": str(self.work_dir / "storage"),
            "IndexDirectory": str(self.work_dir / "index"),
            "StorageCompression": False,
            "DicomServerEnabled": True,
            "DicomAet": self.ae_title,
            "DicomPort": self.dicom_port,
            "DicomCheckCalledAet": self.check_called_aet,
            "DicomAlwaysAllowEcho": True,
            "DicomAlwaysAllowStore": True,
            "HttpServerEnabled": True,
            "HttpPort": self.http_port,
            "RemoteAccessAllowed": False,  # loopback only
            "AuthenticationEnabled": False,
            "Plugins": [str(DICOMWEB_PLUGIN)] if self.dicomweb else [],
            "DicomWeb": {"Enable": self.dicomweb, "Root": "/dicom-web/",
                         "Servers": self.dicomweb_servers},
            "SynchronousCMove": True,  # the final C-MOVE response after every sub-operation
            "DefaultEncoding": "Utf8",
            "DicomModalities": {
                ae.lower(): [ae, host, port] for ae, (host, port) in self.modalities.items()
            },
        }

    @property
    def log_path(self) -> Path:
        return self.work_dir / "orthanc.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def start(self) -> Orthanc:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        config_path = self.work_dir / "orthanc.json"
        config_path.write_text(json.dumps(self.config(), indent=2))
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [str(ORTHANC), str(config_path)], stdout=log, stderr=subprocess.STDOUT,
                env=dict(os.environ, TCP_NODELAY="1"), cwd=self.work_dir,
                start_new_session=True,
            )
        wait_for_port(self.http_port, timeout=60, proc=self.proc)
        wait_for_port(self.dicom_port, timeout=60, proc=self.proc)
        deadline = time.monotonic() + 60
        while True:
            try:
                self.get("/system")
                return self
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL of its process group if it does not exit in time."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def get(self, path: str) -> Any:
        response = httpx.get(self.url + path, timeout=60)
        response.raise_for_status()
        return response.json()

    def post(self, path: str, body: Any) -> Any:
        response = httpx.post(self.url + path, json=body, timeout=300)
        response.raise_for_status()
        return response.json() if response.content else None

    def file(self, instance_id: str) -> bytes:
        """The PS3.10 file Orthanc stores for an instance (its Orthanc identifier)."""
        response = httpx.get(f"{self.url}/instances/{instance_id}/file", timeout=60)
        response.raise_for_status()
        return response.content

    def upload(self, path: Path) -> dict[str, Any]:
        """Store a PS3.10 file through the REST API (POST /instances)."""
        response = httpx.post(self.url + "/instances", content=path.read_bytes(), timeout=60)
        response.raise_for_status()
        answer: dict[str, Any] = response.json()
        return answer
