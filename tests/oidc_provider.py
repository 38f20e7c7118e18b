"""A standalone OpenID provider for tests: the demo provider (authlib's server side) on a port of
its own, in its own process, so that a test can take the provider away in the middle of a login.

Run: ``python -m tests.oidc_provider PORT CLIENT_BASE_URL KEY_FOLDER PROVIDER_ID``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.conftest import ROOT, free_port, wait_for_port


@dataclass
class StandaloneProvider:
    """The provider at ``http://localhost:<port>`` for a Consilium at ``client_base``, whose
    callback is ``<client_base>/auth/callback/<provider_id>``."""

    client_base: str
    key_folder: Path
    provider_id: str = "ext"
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def issuer(self) -> str:
        return f"http://localhost:{self.port}"

    def start(self) -> StandaloneProvider:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.oidc_provider", str(self.port), self.client_base,
             str(self.key_folder), self.provider_id],
            cwd=ROOT, env=dict(os.environ), stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        wait_for_port(self.port, proc=self.proc)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.issuer}/.well-known/openid-configuration",
                             timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise TimeoutError("the standalone provider does not answer")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


def main(argv: list[str]) -> None:
    import uvicorn
    from starlette.applications import Starlette

    from consilium.identity.devidp import dev_idp_routes

    port, client_base, key_folder, provider_id = int(argv[0]), argv[1], Path(argv[2]), argv[3]
    app = Starlette(routes=dev_idp_routes(f"http://localhost:{port}", client_base, key_folder,
                                          provider_id=provider_id))
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


if __name__ == "__main__":
    main(sys.argv[1:])
