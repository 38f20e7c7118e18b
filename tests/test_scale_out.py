"""Two web processes behind one address, as a hospital runs them behind a load balancer: one
PostgreSQL, one storage folder, Socket.IO rooms shared through Redis. A session opened on one
process works on the other, and a case event caused on one process reaches the clients
connected to the other, live."""

from __future__ import annotations

import os
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import socketio

from tests.conftest import CONFIG, CONSILIUM, pydicom_data_dir
from tests.postgres import postgres_server
from tests.redis_server import redis_server
from tests.webserver import WebServer, csrf_of

CITY_STUDY = "1.3.6.1.4.1.5962.1.2.1.20040119072730.12322"  # CT_small.dcm


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[WebServer, WebServer]]:
    data_dir = tmp_path_factory.mktemp("scale-out") / "var"
    with postgres_server() as database_url, redis_server() as redis_url:
        env = {"CONSILIUM_DATABASE_URL": database_url, "CONSILIUM_LIVE_REDIS_URL": redis_url,
               "CONSILIUM_IDENTITY_LOGIN_ATTEMPTS_PER_MINUTE": "1000"}
        subprocess.run([str(CONSILIUM), "import", "--config", str(CONFIG), "--data-dir",
                        str(data_dir), "--institution", "city-hospital", "--quiet",
                        str(pydicom_data_dir() / "test_files" / "CT_small.dcm")],
                       check=True, capture_output=True, env=_with(env))
        first = WebServer(data_dir, extra_env=env).start()  # migrates, makes the IdP key
        second = WebServer(data_dir, extra_env=env).start()
        try:
            yield first, second
        finally:
            second.stop()
            first.stop()


def _with(extra: dict[str, str]) -> dict[str, str]:
    env = dict(os.environ, **extra)
    env.pop("CONSILIUM_CONFIG", None)
    return env


def _post(client: httpx.Client, path: str, body: dict[str, object]) -> httpx.Response:
    response = client.post(path, json=body, headers={"X-CSRF-Token": csrf_of(client)})
    assert response.status_code == 200, response.text
    return response


class _Listener:
    """A Socket.IO client of one process, collecting ``case:updated`` events."""

    def __init__(self, server: WebServer, http: httpx.Client) -> None:
        self.events: list[dict[str, object]] = []
        self.arrived = threading.Condition()
        self.client = socketio.Client(reconnection=False)
        self.client.on("case:updated", self._on_update)
        self.client.connect(server.url, transports=["websocket"], wait_timeout=5, headers={
            "Cookie": f"consilium_session={http.cookies['consilium_session']}"})

    def _on_update(self, data: dict[str, object]) -> None:
        with self.arrived:
            self.events.append(data)
            self.arrived.notify_all()

    def wait_for(self, case_id: object, status: str) -> dict[str, object]:
        def seen() -> bool:
            return any(e["id"] == case_id and e["status"] == status for e in self.events)

        with self.arrived:
            assert self.arrived.wait_for(seen, timeout=10), self.events
        return next(e for e in self.events if e["id"] == case_id and e["status"] == status)


def test_a_session_of_one_process_is_valid_on_the_other(pair: tuple[WebServer, WebServer]
                                                        ) -> None:
    first, second = pair
    referring = first.login("ivanova")
    with second.client() as other:
        other.cookies.set("consilium_session", referring.cookies["consilium_session"])
        me = other.get("/api/me")
    assert me.status_code == 200 and me.json()["subject"] == "dev:ivanova"


def test_case_events_cross_processes_through_redis(pair: tuple[WebServer, WebServer]) -> None:
    first, second = pair
    referring = first.login("ivanova")  # works on the first process
    consultant = second.login("kuznetsova")  # works on the second
    referring_live = _Listener(first, referring)
    consultant_live = _Listener(second, consultant)
    try:
        case_id = _post(referring, "/api/cases", {
            "question": "q", "study_uids": [CITY_STUDY],
            "target_institution": "regional-center"}).json()["id"]
        _post(referring, f"/api/cases/{case_id}/submit", {})  # handled by the first process
        event = consultant_live.wait_for(case_id, "submitted")  # seen on the second
        assert event["what"] == "submit" and "question" not in event
        _post(consultant, f"/api/cases/{case_id}/accept", {})  # handled by the second
        assert referring_live.wait_for(case_id, "accepted")["what"] == "accept"
    finally:
        referring_live.client.disconnect()
        consultant_live.client.disconnect()
    assert "Socket.IO rooms shared through Redis" in first.log + second.log


def test_the_processes_share_one_archive(pair: tuple[WebServer, WebServer], tmp_path: Path
                                         ) -> None:
    """A study is served by both processes from the shared index and storage folder."""
    first, second = pair
    for server in pair:
        client = server.login("ivanova")
        response = client.get(f"/dicom-web/studies/{CITY_STUDY}/metadata")
        assert response.status_code == 200, (server.url, response.text[:300])
        assert response.json()[0]["0020000D"]["Value"] == [CITY_STUDY]
    assert first.url != second.url


def test_login_rate_limit_is_shared_by_the_processes() -> None:
    """Each web process has its own limiter object; with Redis they count together, so two
    processes allow the limit once, not twice. An unreachable Redis falls back to counting in
    the process (logins go on, still limited)."""
    import asyncio

    from consilium.identity.ratelimit import LocalRateLimiter, RedisRateLimiter

    async def attempts(limiters: list[RedisRateLimiter], key: str, count: int) -> list[bool]:
        return [await limiters[i % len(limiters)].allow(key) for i in range(count)]

    async def scenario(url: str) -> None:
        # hour-long windows: the test cannot straddle a window boundary by chance
        processes = [RedisRateLimiter(url, limit=3, window=3600),
                     RedisRateLimiter(url, limit=3, window=3600)]
        assert await attempts(processes, "10.0.0.7", 5) == [True] * 3 + [False] * 2
        assert await attempts(processes, "10.0.0.8", 1) == [True]  # per address
        unreachable = RedisRateLimiter("redis://127.0.0.1:1/0", limit=2, window=3600)
        assert await attempts([unreachable], "10.0.0.7", 3) == [True, True, False]
        local = LocalRateLimiter(limit=1)
        assert await local.allow("a") and not await local.allow("a")

    with redis_server() as url:
        asyncio.run(scenario(url))
