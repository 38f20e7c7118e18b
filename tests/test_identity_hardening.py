"""What a caller who is not logged in can make the server write, and which client address it
believes: audit writes by unauthenticated callers are limited and clipped, X-Forwarded-For is
believed only from configured proxies."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.webserver import WebServer

FORGED_ADDRESS = "203.0.113.9"


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebServer]:
    server = WebServer(tmp_path_factory.mktemp("hardening") / "var", extra_env={
        "CONSILIUM_IDENTITY_UNAUTHENTICATED_AUDIT_PER_MINUTE": "5"}).start()
    yield server
    server.stop()


def _unknown_events(web: WebServer) -> list[tuple[str, str, str]]:
    with sqlite3.connect(web.data_dir / "consilium.db") as conn:
        return conn.execute("SELECT action, source, detail FROM audit_event "
                            "WHERE actor = 'unknown' ORDER BY id").fetchall()


def test_unauthenticated_audit_writes_are_limited_and_clipped(web: WebServer) -> None:
    client = web.client()
    hostile = "=cmd\r\n" + "A" * 5000 + "\x1b[31m"
    for _ in range(40):
        forged = client.get("/auth/callback/dev", params={"state": "x",
                                                           "error_description": hostile})
        assert forged.status_code == 401
        refused = client.get("/api/studies", headers={"Authorization": "Bearer not-a-jwt"})
        assert refused.status_code == 401
    events = _unknown_events(web)
    assert len(events) == 6  # the limit, then one event saying the rest was not recorded
    details = [json.loads(d) for _, _, d in events]
    assert "not recorded" in details[-1]["reason"]
    for detail in details:
        for value in detail.values():
            assert len(value) <= 120 and value.isprintable(), value
    assert details[0]["reason"].startswith("=cmd??AAAA") and details[0]["reason"].endswith("…")


def _login_source(web: WebServer) -> str:
    """Log in with a forged X-Forwarded-For; the address the login was audited from."""
    client = web.client()
    client.headers["X-Forwarded-For"] = FORGED_ADDRESS
    authorize = client.get("/auth/login/dev").headers["location"]
    answer = client.post(authorize, data={"username": "orlov", "password": "demo"})
    assert client.get(answer.headers["location"]).status_code == 303
    with sqlite3.connect(web.data_dir / "consilium.db") as conn:
        [(source,)] = conn.execute("SELECT source FROM audit_event WHERE action = 'login' "
                                   "ORDER BY id DESC LIMIT 1").fetchall()
    return str(source)


def test_x_forwarded_for_is_ignored_unless_from_a_configured_proxy(web: WebServer,
                                                                     tmp_path: Path) -> None:
    assert _login_source(web) == "127.0.0.1"
    behind_proxy = WebServer(tmp_path / "var", extra_env={
        "CONSILIUM_HTTP_TRUSTED_PROXIES": json.dumps(["127.0.0.1", "::1"])}).start()
    try:
        assert _login_source(behind_proxy) == FORGED_ADDRESS
    finally:
        behind_proxy.stop()


def test_rate_limiters_remember_a_bounded_number_of_addresses() -> None:
    from consilium.identity.ratelimit import MAX_KEYS, LocalRateLimiter

    limiter = LocalRateLimiter(limit=2, window=60)
    for n in range(MAX_KEYS * 3):
        assert limiter.allow_now(f"10.{n >> 16}.{(n >> 8) & 255}.{n & 255}")
        assert len(limiter.events) <= MAX_KEYS
    assert limiter.allow_now("192.0.2.1") and limiter.allow_now("192.0.2.1")
    assert not limiter.allow_now("192.0.2.1")  # a recent address is still limited
