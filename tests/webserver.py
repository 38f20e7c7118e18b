"""A real ``consilium serve`` process (web + DICOM) for end-to-end tests, and a scripted login
through the demo identity provider."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import CONFIG, CONSILIUM, free_port, wait_for_port


@dataclass
class WebServer:
    data_dir: Path
    http_port: int = field(default_factory=free_port)
    dicom_port: int = field(default_factory=free_port)
    extra_env: dict[str, str] = field(default_factory=dict)
    config: Path = CONFIG
    proc: subprocess.Popen[bytes] | None = None
    _auditor: httpx.Client | None = None

    @property
    def url(self) -> str:
        return f"http://localhost:{self.http_port}"

    def start(self) -> WebServer:
        env = dict(os.environ, CONSILIUM_PUBLIC_URL=self.url, **self.extra_env)
        env.pop("CONSILIUM_CONFIG", None)
        log = (self.data_dir.parent / f"web-{self.http_port}.log").open("ab")
        self.proc = subprocess.Popen(
            [str(CONSILIUM), "serve", "--config", str(self.config), "--data-dir",
             str(self.data_dir), "--http-port", str(self.http_port), "--dicom-port",
             str(self.dicom_port), "--no-demo"],
            stdout=log, stderr=subprocess.STDOUT, env=env,
        )
        wait_for_port(self.http_port, proc=self.proc)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:  # the port opens before the app is ready
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise TimeoutError("web server not healthy")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    @property
    def log(self) -> str:
        path = self.data_dir.parent / f"web-{self.http_port}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, follow_redirects=False, timeout=30)

    def login(self, username: str, password: str = "demo", return_to: str = "/",
              provider: str = "dev") -> httpx.Client:
        """The whole authorization-code flow against the demo provider (or another provider
        with the same login form), as a browser does it."""
        client = self.client()
        start = client.get(f"/auth/login/{provider}", params={"return_to": return_to})
        assert start.status_code == 303, start.text
        authorize = start.headers["location"]
        answer = client.post(authorize, data={"username": username, "password": password})
        assert answer.status_code == 302, answer.text
        callback = client.get(answer.headers["location"])
        assert callback.status_code == 303, callback.text
        assert callback.headers["location"] == return_to
        return client

    def flush_audit(self) -> None:
        """Wait until the server has written every audit event queued so far: an audit search
        flushes the server's audit writer first (read your writes), so one is made as the
        demo admin (no event of its own: it reads, and it logged in once)."""
        if self._auditor is None:
            self._auditor = self.login("city-admin")
        answer = self._auditor.get("/api/audit", params={"limit": 1})
        assert answer.status_code == 200, answer.text

    def signing_key(self) -> Any:
        from joserfc.jwk import RSAKey

        return RSAKey.import_key(json.loads(
            (self.data_dir / "dev-idp" / "signing-key.json").read_text()))


def csrf_of(client: httpx.Client) -> str:
    token = client.get("/api/me").json()["csrf_token"]
    assert isinstance(token, str) and token
    return token
