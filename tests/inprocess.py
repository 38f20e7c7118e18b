"""The whole web application in the test's own process (Starlette's test client over the app
``create_app`` builds, authentication middleware and Socket.IO included), with demo clinicians
signed in by a real session row: for tests that make hundreds of requests, or that call domain
functions beside the app. End-to-end tests through the login flow use
:class:`tests.webserver.WebServer`."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from starlette.testclient import TestClient

from consilium.app import create_app
from consilium.archive.ingest import IngestSource, ingest_part10
from consilium.identity.dev_clinicians import DEMO_CLINICIANS
from consilium.identity.middleware import SESSION_COOKIE
from consilium.identity.models import Role, User
from consilium.identity.policy import Principal
from consilium.identity.users import MappedClaims, create_session, principal_of, upsert_user
from consilium.service import Runtime, open_runtime
from consilium.settings import load_settings
from tests.conftest import CONFIG, pydicom_data_dir

DATA = pydicom_data_dir() / "test_files"
CITY_STUDY = "1.3.6.1.4.1.5962.1.2.1.20040119072730.12322"  # CT_small.dcm, city-hospital
REGIONAL_STUDY = "1.3.6.1.4.1.5962.1.2.4.20040826185059.5457"  # MR_small.dcm, regional-center


@dataclass
class InProcess:
    runtime: Runtime
    app: Any
    clients: dict[str, TestClient] = field(default_factory=dict)

    def user(self, username: str) -> User:
        """The demo clinician ``username`` as a user row (created as at a first login)."""
        person = next(c for c in DEMO_CLINICIANS if c.username == username)
        return upsert_user(self.runtime.engine, "dev", MappedClaims(
            person.username, person.name, person.email, person.institution,
            frozenset(Role(r) for r in person.roles), person.specialty))

    def principal(self, username: str) -> Principal:
        """The clinician as the domain functions take them."""
        return principal_of(self.user(username))

    def login(self, username: str) -> TestClient:
        """A client signed in as the demo clinician ``username`` (CSRF header set)."""
        if username in self.clients:
            return self.clients[username]
        user = self.user(username)
        token, row = create_session(self.runtime.engine, user, "dev", "", "test", 1.0)
        client = TestClient(self.app, base_url="http://testserver",
                            headers={"X-CSRF-Token": row.csrf_token})
        client.cookies.set(SESSION_COOKIE, token)
        self.clients[username] = client
        return client

    def anonymous(self) -> TestClient:
        return TestClient(self.app, base_url="http://testserver")


@contextmanager
def in_process(data_dir: Path, lifespan: bool = True, **overrides: Any) -> Iterator[InProcess]:
    """The application over a fresh data folder with CT_small (city hospital) and MR_small
    (regional center) archived; its lifespan runs for the duration (unless a server the test
    starts runs it)."""
    runtime = open_runtime(load_settings(CONFIG, {"data_dir": data_dir, **overrides},
                                         environ={}))
    for institution, name in (("city-hospital", "CT_small.dcm"),
                              ("regional-center", "MR_small.dcm")):
        assert ingest_part10(runtime.store, (DATA / name).read_bytes(),
                             IngestSource(institution)).ok
    app = create_app(runtime)
    world = InProcess(runtime, app)
    try:
        if lifespan:
            with TestClient(app):  # the lifespan: startup, then shutdown at the end
                yield world
        else:
            yield world
    finally:
        for client in world.clients.values():
            client.close()
        runtime.close()
