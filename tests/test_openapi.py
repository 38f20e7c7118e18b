"""The OpenAPI document describes what is routed, and everything routed under /api is in it."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from starlette.routing import Mount, Route

from consilium.app import create_app
from consilium.archive.routes import StudySummary
from consilium.consult.models import (
    CaseCreate,
    CaseDetail,
    CaseList,
    CasePublic,
    CaseUpdate,
    DraftUpdate,
    MessageCreate,
    MessagePublic,
    TimelineEntryPublic,
)
from consilium.consult.routes import TRANSITION_BODIES
from consilium.identity.models import MePublic
from consilium.identity.roster import Directory
from consilium.openapi import CASE_ACTIONS, REF, openapi_document
from consilium.service import open_runtime
from consilium.settings import load_settings
from tests.conftest import CONFIG
from tests.inprocess import CITY_STUDY, in_process


def _routed_paths(tmp_path: Path) -> set[str]:
    runtime = open_runtime(load_settings(CONFIG, {"data_dir": tmp_path / "var"}, environ={}))
    app = create_app(runtime)
    while not hasattr(app, "routes"):  # unwrap the middleware and the Socket.IO app
        app = getattr(app, "app", None) or app.other_asgi_app
    paths: set[str] = set()

    def walk(routes: list[object], prefix: str = "") -> None:
        for route in routes:
            if isinstance(route, Mount):
                walk(list(route.routes), prefix + route.path)
            elif isinstance(route, Route):
                paths.add(re.sub(r"\{(\w+)(:\w+)?\}", r"{\1}", prefix + route.path))

    walk(list(app.routes))
    return paths


def test_documented_paths_are_routed_and_api_paths_documented(tmp_path: Path) -> None:
    document = openapi_document()
    routed = _routed_paths(tmp_path)
    assert "/api/cases/{case_id}/{action}" in routed
    expanded = {p for p in routed if "{action}" not in p} | {
        f"/api/cases/{{case_id}}/{action}" for action in CASE_ACTIONS}
    documented = set(document["paths"])
    assert documented - expanded == set()  # nothing documented that is not served
    api = {p for p in routed if p.startswith("/api/") and "{action}" not in p}
    assert api - documented == set()  # nothing under /api served without a description
    assert document["openapi"].startswith("3.")


BINARY = {"/api/cases/{case_id}/attachments/{attachment_id}",
          "/api/cases/{case_id}/conclusions/{version}.pdf",
          "/api/consilia/{session_id}/protocol.pdf",
          "/api/render/series/{series_uid}/mpr", "/api/render/series/{series_uid}/volume",
          "/api/render/series/{series_uid}/isosurface.stl", "/api/media/export"}


def test_bodies_are_described_by_the_models_the_routes_use() -> None:
    document = openapi_document()
    schemas = document["components"]["schemas"]

    def ref(schema: dict[str, Any]) -> str:
        return str(schema["$ref"]).rsplit("/", 1)[-1]

    for model in (CaseCreate, CaseUpdate, MessageCreate, DraftUpdate, *TRANSITION_BODIES.values()):
        generated = model.model_json_schema(ref_template=REF, mode="validation")
        generated.pop("$defs", None)
        assert schemas[model.__name__] == generated, model
    paths = document["paths"]
    body = paths["/api/cases"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert ref(body) == "CaseCreate"
    for action, model in TRANSITION_BODIES.items():
        op = paths[f"/api/cases/{{case_id}}/{action}"]["post"]
        assert ref(op["requestBody"]["content"]["application/json"]["schema"]) == model.__name__
    assert "allowed_actions" in schemas["CasePublic"]["properties"]
    # every JSON answer under /api has a schema, every error the Error shape
    for path, operations in paths.items():
        for method, op in operations.items():
            for code, response in op["responses"].items():
                content = response.get("content", {}).get("application/json")
                if code.startswith("2") and path.startswith("/api/") and path not in BINARY:
                    assert content and content["schema"], (method, path, code)
                if code.startswith(("4", "5")):
                    assert ref(content["schema"]) == "Error", (method, path, code)


def test_answers_are_their_public_models(tmp_path: Path) -> None:
    """What the server answers validates against the documented model, strictly: no field the
    model does not declare, none missing."""
    with in_process(tmp_path / "var") as world:
        referring = world.login("ivanova")
        created = referring.post("/api/cases", json={
            "question": "q", "study_uids": [CITY_STUDY],
            "target_institution": "regional-center"})
        case_id = created.json()["id"]
        answers: list[tuple[type[BaseModel], Any]] = [
            (CasePublic, created.json()),
            (CaseDetail, referring.get(f"/api/cases/{case_id}").json()),
            (CaseList, referring.get("/api/cases").json()),
            (MessagePublic, referring.post(f"/api/cases/{case_id}/messages",
                                           json={"text": "t"}).json()),
            (MePublic, referring.get("/api/me").json()),
            (Directory, referring.get("/api/directory").json()),
        ]
        answers += [(StudySummary, s) for s in referring.get("/api/studies").json()]
        answers += [(TimelineEntryPublic, e) for e in
                    referring.get(f"/api/cases/{case_id}/history").json()]
        assert len(answers) > 8
        for model, data in answers:
            forbidding = type(f"Strict{model.__name__}", (model,),
                              {"model_config": {**model.model_config, "extra": "forbid"}})
            parsed = forbidding.model_validate_json(json.dumps(data))
            assert set(data) == set(model.model_fields), model
            assert parsed.model_dump(mode="json").keys() == data.keys()
