"""The web edge: every domain error answered by one handler with its status, headers and
``{"error": ...}``; an unexpected exception logged once and answered 500 without details; a
"not found" on record once; request bodies validated against their model, naming the field."""

from __future__ import annotations

import logging
import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route
from starlette.testclient import TestClient

import consilium
from consilium import errors
from consilium.archive import catalog
from consilium.archive.access import Unreadable
from consilium.archive.remote import RemotePacsError
from consilium.audit import AuditTrail
from consilium.db import make_engine, migrate
from consilium.edge import INTERNAL_ERROR, UnexpectedErrors, exception_handlers
from consilium.errors import DomainError
from consilium.render.bridge import RenderFailure
from consilium.render.protocol import BadParameter
from tests.inprocess import CITY_STUDY as CITY
from tests.inprocess import REGIONAL_STUDY, InProcess, in_process

PLATFORM = Path(consilium.__file__).parent


def every_error_class() -> list[type[DomainError]]:
    """DomainError and every subclass the application defines (imported above)."""
    found: list[type[DomainError]] = []
    todo: list[type[DomainError]] = [DomainError]
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo.extend(cls.__subclasses__())
    return found


def instance_of(cls: type[DomainError], message: str) -> DomainError:
    if cls is RenderFailure:
        return RenderFailure(503, message, "busy")
    return cls(message)


@pytest.fixture
def edge_app(tmp_path: Path) -> Iterator[tuple[TestClient, AuditTrail]]:
    """A bare Starlette app with the edge's handlers and a mount, as app.py installs them."""
    engine = make_engine(f"sqlite:///{tmp_path / 'edge.db'}")
    migrate(engine)
    audit = AuditTrail(engine)
    classes = {cls.__name__: cls for cls in every_error_class()}

    async def raising(request: Request) -> Response:
        raise instance_of(classes[request.path_params["name"]], "the reason <3")

    async def broken(_request: Request) -> Response:
        raise RuntimeError("secret detail of a bug")

    app = Starlette(routes=[Route("/raise/{name}", raising),
                            Mount("/mounted", routes=[Route("/raise/{name}", raising)]),
                            Route("/broken", broken)],
                    exception_handlers=exception_handlers(audit),
                    middleware=[Middleware(UnexpectedErrors)])
    with TestClient(app) as client:
        yield client, audit
    audit.close()


def test_every_domain_error_class_answers_its_status_from_the_one_handler(
        edge_app: tuple[TestClient, AuditTrail]) -> None:
    client, _ = edge_app
    classes = every_error_class()
    assert {errors.NotAcceptable, errors.Unprocessable, errors.Unavailable, RenderFailure,
            BadParameter, RemotePacsError, Unreadable} <= set(classes)
    for cls in classes:
        expected = instance_of(cls, "the reason <3")
        for prefix in ("", "/mounted"):
            answer = client.get(f"{prefix}/raise/{cls.__name__}")
            assert answer.status_code == expected.status, cls
            assert answer.json() == expected.payload(), cls
            assert answer.json()["error"] == "the reason <3"
            assert answer.headers["cache-control"] == "no-store"
            for name, value in expected.headers.items():
                assert answer.headers[name] == value, (cls, name)
    assert client.get("/raise/NotAuthenticated").headers["www-authenticate"] == "Bearer"
    assert client.get("/raise/Unavailable").headers["retry-after"] == "1"
    assert client.get("/raise/BadParameter").json()["reason"] == "parameter"
    assert client.get("/raise/RemotePacsError").status_code == 502


def test_an_unexpected_exception_is_logged_once_and_answered_500_without_detail(
        edge_app: tuple[TestClient, AuditTrail], caplog: pytest.LogCaptureFixture) -> None:
    client, _ = edge_app
    with caplog.at_level(logging.ERROR):
        answer = client.get("/broken")
    assert answer.status_code == 500
    assert answer.json() == {"error": INTERNAL_ERROR}
    assert "secret" not in answer.text and "Traceback" not in answer.text
    logged = [r for r in caplog.records if r.exc_info is not None]
    assert len(logged) == 1
    assert "GET /broken" in logged[0].getMessage()
    assert "secret detail of a bug" in str(logged[0].exc_info[1])


def test_errors_are_rendered_in_the_edge_only() -> None:
    """No adapter builds an error answer or catches domain errors to render them: the places
    that answer errors themselves are the edge, the authentication middleware (it runs before
    the application), the demo identity provider (OAuth's own error format), and the two edges
    of the other protocols: the live consilium's Socket.IO acknowledgements and the worklist's
    DIMSE statuses, which answer domain errors in their protocol's form."""
    rendering = re.compile(r"JSONResponse\(\s*\{\s*\"error\"|except DomainError|"
                           r"except \(?[A-Za-z, ]*(NotFound|Forbidden|InvalidInput)\b[^\n]*:\n"
                           r"\s*return")
    found = sorted(str(path.relative_to(PLATFORM)) for path in PLATFORM.rglob("*.py")
                   if rendering.search(path.read_text()))
    assert found == ["archive/dimse/worklist.py", "edge.py", "identity/devidp.py",
                     "identity/middleware.py", "live/namespace.py"]


def test_the_application_installs_one_handler_for_all_domain_errors(tmp_path: Path) -> None:
    with in_process(tmp_path / "var") as world:
        app: Any = world.app
        while not hasattr(app, "exception_handlers"):
            app = getattr(app, "app", None) or app.other_asgi_app
        handlers = {k: v for k, v in app.exception_handlers.items() if isinstance(k, type)
                    and issubclass(k, Exception)}
        assert list(handlers) == [DomainError]
        assert any(m.cls is UnexpectedErrors for m in app.user_middleware)


def _denied_rows(world: InProcess, actor: str) -> list[tuple[str, str, str]]:
    """(study, outcome, detail) of the actor's ``denied`` rows."""
    world.runtime.audit.flush()
    with sqlite3.connect(world.runtime.settings.data_dir / "consilium.db") as conn:
        return conn.execute("SELECT study_uid, outcome, detail FROM audit_event WHERE actor = ? "
                            "AND action = 'denied' ORDER BY id", (actor,)).fetchall()


def test_a_not_found_is_recorded_once(tmp_path: Path) -> None:
    with in_process(tmp_path / "var") as world:
        head = world.login("sidorov")
        assert head.get("/api/cases/987654").status_code == 404
        rows = _denied_rows(world, "dev:sidorov")
        assert len(rows) == 1 and "/api/cases/987654" in rows[0][2]
        # the gate records its own refusal; the edge does not add a second row
        assert head.get(f"/dicom-web/studies/{REGIONAL_STUDY}/metadata").status_code == 404
        rows = _denied_rows(world, "dev:sidorov")
        assert len(rows) == 2 and rows[1][0] == REGIONAL_STUDY
        # an anonymous caller is answered 401 before anything is looked up
        anonymous = world.anonymous()
        answer = anonymous.get("/api/cases/987654")
        assert answer.status_code == 401 and answer.headers["www-authenticate"] == "Bearer"


def test_the_application_answers_a_bug_with_500_and_logs_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A failure no handler knows (here: the archive's counts raising) in the whole app, with
    its middleware and Socket.IO around it: one log record, a 500 without the detail."""
    with in_process(tmp_path / "var") as world:
        def broken(_engine: object) -> tuple[int, int]:
            raise RuntimeError("secret detail of a bug")

        monkeypatch.setattr(catalog, "counts", broken)
        with caplog.at_level(logging.ERROR):
            answer = world.anonymous().get("/healthz")
        assert answer.status_code == 500 and answer.json() == {"error": INTERNAL_ERROR}
        assert [r.exc_info is not None for r in caplog.records
                if "secret detail" in str(r.exc_info and r.exc_info[1])] == [True]


def test_bodies_that_do_not_match_their_model_answer_400_naming_the_field(
        tmp_path: Path) -> None:
    with in_process(tmp_path / "var") as world:
        referring = world.login("ivanova")

        def refused(method: str, path: str, body: Any, *fields: str) -> None:
            answer = referring.request(method, path, json=body)
            assert answer.status_code == 400, (path, body, answer.text)
            for name in fields:
                assert f"'{name}'" in answer.json()["error"], (path, body, answer.text)

        refused("POST", "/api/cases", {}, "question", "study_uids", "target_institution")
        refused("POST", "/api/cases", {"question": 5, "study_uids": "1.2.3",
                                       "target_institution": "regional-center"},
                "question", "study_uids")
        refused("POST", "/api/cases", {"question": "  ", "study_uids": [CITY],
                                       "target_institution": "regional-center",
                                       "priority": "whenever"}, "question", "priority")
        created = referring.post("/api/cases", json={
            "question": "q", "study_uids": [CITY], "target_institution": "regional-center",
            "unknown": "ignored"})
        assert created.status_code == 200, created.text
        case_id = created.json()["id"]
        refused("PATCH", f"/api/cases/{case_id}", {"question": "x"}, "version")
        refused("PATCH", f"/api/cases/{case_id}", {"version": "1"}, "version")  # strict
        refused("POST", f"/api/cases/{case_id}/messages", {"text": ""}, "text")
        refused("POST", f"/api/cases/{case_id}/decline", {"version": 1}, "reason")
        refused("PUT", f"/api/cases/{case_id}/conclusion-draft", {"findings": 1}, "findings")
        not_json = referring.post(f"/api/cases/{case_id}/messages", content=b"{text",
                                  headers={"Content-Type": "application/json"})
        assert not_json.status_code == 400 and "not JSON" in not_json.json()["error"]
        assert referring.post(f"/api/cases/{case_id}/messages",
                              json=["text"]).status_code == 400
        huge = referring.post(f"/api/cases/{case_id}/messages",
                              json={"text": "x" * (2 * 1024 * 1024)})
        assert huge.status_code == 413
        # nothing of it changed the case
        case = referring.get(f"/api/cases/{case_id}").json()
        assert (case["case"]["version"], case["messages"]) == (1, [])
