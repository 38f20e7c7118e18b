"""The OpenAPI document describes what is routed, and everything routed under /api is in it."""

from __future__ import annotations

import re
from pathlib import Path

from starlette.routing import Mount, Route

from consilium.app import create_app
from consilium.openapi import CASE_ACTIONS, openapi_document
from consilium.service import open_runtime
from consilium.settings import load_settings
from tests.conftest import CONFIG


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
