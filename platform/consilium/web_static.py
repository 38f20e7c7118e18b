"""The built web front end (``frontend/dist``, made by ``make frontend``) under ``/viewer``.

``/viewer`` and every ``/viewer/...`` path that is not a file is the single-page app's
``index.html`` (its router reads the path), sent with ``no-cache`` so a new build is picked up at
once. ``/viewer/assets/...`` are Vite's content-hashed files (scripts, styles, the decode worker,
codec WebAssembly): their names change whenever their content does, so they are cached for a
year as immutable. Without a build every page of the viewer says how to make one.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from consilium.identity.web import current_principal

PREFIX = "/viewer"
DIST = Path(__file__).resolve().parents[2] / "frontend" / "dist"
IMMUTABLE = "public, max-age=31536000, immutable"
NOT_BUILT = (
    "The web viewer is not built: run `make frontend` (npm ci + vite build in frontend/), "
    "then reload this page.\n"
)


def viewer_routes(dist: Path = DIST) -> list[BaseRoute]:
    """The routes of the viewer, serving the build in ``dist``."""
    assets = (dist / "assets").resolve()

    async def asset(request: Request) -> Response:
        name = request.path_params["path"]
        path = (assets / name).resolve()
        if not path.is_relative_to(assets) or not path.is_file():
            return PlainTextResponse("not found\n", 404)
        return FileResponse(path, headers={"Cache-Control": IMMUTABLE})

    async def page(request: Request) -> Response:
        index = dist / "index.html"
        if not index.is_file():
            return PlainTextResponse(NOT_BUILT, 503)
        if not current_principal(request).authenticated:
            back = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(f"/auth/login?return_to={quote(back, safe='/')}", 303)
        return FileResponse(index, headers={"Cache-Control": "no-cache"})

    return [
        Route(PREFIX + "/assets/{path:path}", asset),
        Route(PREFIX, page),
        Route(PREFIX + "/{path:path}", page),
    ]
