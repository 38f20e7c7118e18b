"""A live consilium across two web processes on one PostgreSQL and one Redis: participants
connected to different processes see the same changes in the same order, a late joiner on
either gets the same state, and the connections a killed process left open are closed by the
other one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from pydicom import dcmread

from consilium.synthetic import PatientSpec, StudySpec, write_ct_series
from tests.conftest import CONFIG, CONSILIUM
from tests.live_client import Participant
from tests.postgres import postgres_server
from tests.redis_server import redis_server
from tests.webserver import WebServer, csrf_of

STUDY = StudySpec(PatientSpec("LIVE-S01", "Scale^Out"), "20261204", accession="LS1")


@dataclass
class Pair:
    first: WebServer
    second: WebServer
    study_uid: str
    series_uid: str
    env: dict[str, str]


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    root = tmp_path_factory.mktemp("live-scale")
    paths = write_ct_series(STUDY, root / "ct", slices=8, rows=32, columns=32,
                            uid_seed="live-scale")
    first_file = dcmread(paths[0], stop_before_pixels=True)
    data_dir = root / "var"
    with postgres_server() as database_url, redis_server() as redis_url:
        env = {"CONSILIUM_DATABASE_URL": database_url, "CONSILIUM_LIVE_REDIS_URL": redis_url,
               "CONSILIUM_IDENTITY_LOGIN_ATTEMPTS_PER_MINUTE": "1000",
               "CONSILIUM_LIVE_PREWARM_SERIES": "0"}
        subprocess.run([str(CONSILIUM), "import", "--config", str(CONFIG), "--data-dir",
                        str(data_dir), "--institution", "city-hospital", "--quiet",
                        str(root / "ct")], check=True, capture_output=True,
                       env={k: v for k, v in {**os.environ, **env}.items()
                            if k != "CONSILIUM_CONFIG"})
        first = WebServer(data_dir, extra_env=env).start()
        second = WebServer(data_dir, extra_env=env).start()
        try:
            yield Pair(first, second, str(first_file.StudyInstanceUID),
                       str(first_file.SeriesInstanceUID), env)
        finally:
            second.stop()
            first.stop()


def _post(client: httpx.Client, path: str, body: dict[str, Any]) -> dict[str, Any]:
    answer = client.post(path, json=body, headers={"X-CSRF-Token": csrf_of(client)})
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def _session(pair: Pair, chair: httpx.Client) -> str:
    case = _post(chair, "/api/cases", {"question": "scale", "study_uids": [pair.study_uid],
                                       "target_institution": "regional-center"})
    _post(chair, f"/api/cases/{case['id']}/submit", {})
    return str(_post(chair, f"/api/cases/{case['id']}/consilia",
                     {"invitees": ["dev:petrov"]})["id"])


def _stack(pair: Pair, index: int) -> dict[str, Any]:
    return {"viewports": [{"study_uid": pair.study_uid, "series_uid": pair.series_uid,
                           "image_index": index}]}


def test_participants_on_two_processes_see_one_order(pair: Pair) -> None:
    chair_http = pair.first.login("ivanova")
    petrov_http = pair.second.login("petrov")
    kuz_http = pair.first.login("kuznetsova")
    sid = _session(pair, chair_http)
    chair = Participant(pair.first.url, chair_http, "ivanova")
    petrov = Participant(pair.second.url, petrov_http, "petrov")  # the other process
    kuznetsova = Participant(pair.first.url, kuz_http, "kuznetsova")
    people = [chair, petrov, kuznetsova]
    late = Participant(pair.second.url, pair.second.login("morozov"), "morozov")
    try:
        for p in people:
            assert p.join(sid)["ok"]
        chair.wait(lambda p: p.state is not None and sum(
            m["online"] for m in p.state["members"].values()) == 3)
        start = max(p.current()["seq"] for p in people)
        errors: list[str] = []

        def talk(p: Participant) -> None:
            for i in range(20):
                answer = p.call("chat:send", {"session_id": sid, "text": f"{p.name} {i}"})
                if not answer["ok"]:
                    errors.append(str(answer))
                p.send("pointer:move", {"session_id": sid, "series_uid": pair.series_uid,
                                        "x": float(i), "y": 2.0})

        def present() -> None:
            for i in range(150):
                chair.send("view:change", {"session_id": sid, "kind": "view.stack",
                                           "state": _stack(pair, i % 8)})
                time.sleep(0.003)

        threads = [threading.Thread(target=talk, args=(p,)) for p in people]
        threads.append(threading.Thread(target=present))
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors
        time.sleep(0.3)
        final = chair.call("chat:send", {"session_id": sid, "text": "the end"})["seq"]
        for p in people:
            p.wait_seq(final)
        seen = [[(c["seq"], c["kind"], c["actor"], json.dumps(c["payload"], sort_keys=True))
                 for c in p.changes if c["seq"] > start] for p in people]
        assert seen[0] == seen[1] == seen[2]
        assert [s for s, *_ in seen[0]] == list(range(start + 1, final + 1))
        assert chair.current() == petrov.current() == kuznetsova.current()
        assert "snapshot" in late.join(sid)  # made by the second process
        last = petrov.call("chat:send", {"session_id": sid, "text": "and one more"})["seq"]
        for p in (*people, late):
            p.wait_seq(last)
        assert late.current() == chair.current() == petrov.current()
    finally:
        for p in (*people, late):
            p.disconnect()


def test_a_killed_process_leaves_nobody_online(pair: Pair) -> None:
    chair_http = pair.first.login("ivanova")
    sid = _session(pair, chair_http)
    chair = Participant(pair.first.url, chair_http, "ivanova")
    third = WebServer(pair.first.data_dir, extra_env=pair.env).start()
    try:
        petrov = Participant(third.url, third.login("petrov"), "petrov")
        assert chair.join(sid)["ok"] and petrov.join(sid)["ok"]
        chair.wait(lambda p: p.state is not None
                   and p.state["members"]["dev:petrov"]["online"])
        assert third.proc is not None
        third.proc.send_signal(signal.SIGKILL)  # no goodbye: its connections stay in the table
        third.proc.wait()
        chair.wait(lambda p: p.state is not None
                   and not p.state["members"]["dev:petrov"]["online"], timeout=60)
        left = [c for c in chair.changes if c["kind"] == "member.left"
                and c["payload"]["subject"] == "dev:petrov"]
        assert [c["payload"]["reason"] for c in left] == ["gone"]
    finally:
        chair.disconnect()
        third.stop()
