"""The consult domain notifies by itself: a workflow function called directly (not through the
HTTP routes; from a plain thread, as a CLI command or a job would) reaches the parties'
Socket.IO clients. The app runs under a real uvicorn in this process (as ``consilium serve``
runs it), so that the test holds the very context the routes use."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import socketio
import uvicorn

from consilium.consult import workflow as wf
from consilium.consult.context import ConsultContext
from consilium.consult.models import CaseStatus
from consilium.identity.models import Role
from consilium.identity.policy import Principal
from tests.conftest import free_port, wait_for_port
from tests.inprocess import CITY_STUDY, InProcess, in_process

REFERRING = Principal(subject="dev:ivanova", institution_id="city-hospital",
                      roles=frozenset({Role.REFERRING}), display_name="Анна Иванова",
                      authenticated=True)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[InProcess, str]]:
    port = free_port()
    url = f"http://localhost:{port}"
    with in_process(tmp_path / "var", lifespan=False, public_url=url) as world:
        server = uvicorn.Server(uvicorn.Config(world.app, host="127.0.0.1", port=port,
                                               log_level="warning", lifespan="on"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        wait_for_port(port)
        try:
            yield world, url
        finally:
            server.should_exit = True
            thread.join(timeout=10)


def consult_context(app: Any) -> ConsultContext:
    while not hasattr(app, "state"):
        app = getattr(app, "app", None) or app.other_asgi_app
    context: ConsultContext = app.state.consult
    return context


def test_a_workflow_function_called_directly_notifies_the_parties(
        served: tuple[InProcess, str]) -> None:
    world, url = served
    ctx = consult_context(world.app)
    received: list[dict[str, Any]] = []
    arrived = threading.Condition()
    consultant = socketio.Client(reconnection=False)

    def on_update(data: dict[str, Any]) -> None:
        with arrived:
            received.append(data)
            arrived.notify_all()

    consultant.on("case:updated", on_update)
    cookie = world.login("kuznetsova").cookies["consilium_session"]
    consultant.connect(url, transports=["websocket"], wait_timeout=10,
                       headers={"Cookie": f"consilium_session={cookie}"})
    try:
        # from this test's thread: no request, no route, no event loop of its own
        case = wf.open_case(ctx, REFERRING, question="Узел?", study_uids=[CITY_STUDY],
                            target_institution="regional-center")
        assert case.id is not None
        submitted = wf.submit(ctx, REFERRING, case.id, version=case.version)
        assert submitted.status == CaseStatus.SUBMITTED
        with arrived:
            assert arrived.wait_for(lambda: any(e["id"] == case.id for e in received),
                                    timeout=10)
        # the draft was the requester's own: the target institution heard of the submission
        assert [(e["id"], e["what"], e["status"]) for e in received] == [
            (case.id, "submit", "submitted")]
        assert "question" not in received[0] and "patient_id" not in received[0]
    finally:
        consultant.disconnect()
