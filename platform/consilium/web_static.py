"""The built web front end (``frontend/dist``, made by ``make frontend``): the home page ``/``,
the audit page ``/audit`` and the viewer and case pages under ``/viewer``.

``/``, ``/audit``, ``/viewer`` and every ``/viewer/...`` path that is not a file is the
single-page app's ``index.html`` (its router reads the path), sent with ``no-cache`` so a new
build is picked up at once. ``/`` is served to anyone (it shows a login link to a visitor who is
not logged in); the others send such a visitor to the login first. ``GET /api/ui`` tells the
front end how to show things: the region's time zone, the default language, the archive's AE
title and port (the same for everyone, no patient data).

``/viewer/assets/...`` are Vite's content-hashed files (scripts, styles, the decode worker,
codec WebAssembly): their names change whenever their content does, so they are cached for a
year as immutable. Without a build every page of the viewer says how to make one.
"""

from __future__ import annotations

import gzip
import mimetypes
import threading
from pathlib import Path
from urllib.parse import quote

from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import (
    FileResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
)
from starlette.routing import BaseRoute, Route

from consilium.identity.web import current_principal
from consilium.settings import UI_LANGUAGES, Settings

PREFIX = "/viewer"
DIST = Path(__file__).resolve().parents[2] / "frontend" / "dist"
IMMUTABLE = "public, max-age=31536000, immutable"
NOT_BUILT = (
    "The web viewer is not built: run `make frontend` (npm ci + vite build in frontend/), "
    "then reload this page.\n"
)


# Vite's output that shrinks: the main bundle (3.7 MB of JavaScript) goes to under 1 MB, which
# is what a weak line to a remote hospital feels at the first visit
COMPRESSIBLE = frozenset({".js", ".mjs", ".css", ".wasm", ".svg", ".json", ".map"})


def accepts_gzip(accept_encoding: str | None) -> bool:
    """``gzip`` is in the Accept-Encoding header and not refused with ``q=0``."""
    for item in (accept_encoding or "").split(","):
        coding, _, params = item.strip().partition(";")
        if coding.strip().lower() in ("gzip", "*"):
            q = params.strip().removeprefix("q=")
            try:
                return not params or float(q) > 0
            except ValueError:
                return False
    return False


class GzipCache:
    """Assets compressed once, on first request, and kept: their names change with their
    content, so an entry never goes stale (the file's size and mtime are checked anyway)."""

    def __init__(self) -> None:
        self._entries: dict[Path, tuple[tuple[int, int], bytes]] = {}
        self._lock = threading.Lock()

    def get(self, path: Path) -> bytes:
        stat = path.stat()
        key = (stat.st_size, stat.st_mtime_ns)
        with self._lock:
            entry = self._entries.get(path)
        if entry is not None and entry[0] == key:
            return entry[1]
        body = gzip.compress(path.read_bytes(), compresslevel=6, mtime=0)
        with self._lock:
            self._entries[path] = (key, body)
        return body


class UiConfig(BaseModel):
    """What ``GET /api/ui`` answers (to anyone: the login page shows it too)."""

    time_zone: str = Field(description="IANA zone in which the interface shows instants")
    default_language: str = Field(description="ru or en, when neither user nor browser says")
    languages: list[str]
    ae_title: str = Field(description="the archive's DICOM AE title")
    dicom_port: int


def ui_config(settings: Settings) -> dict[str, object]:
    """What ``GET /api/ui`` answers."""
    return UiConfig(time_zone=settings.ui_time_zone,
                    default_language=settings.ui_default_language,
                    languages=list(UI_LANGUAGES), ae_title=settings.dicom_ae_title,
                    dicom_port=settings.dicom_port).model_dump()


def viewer_routes(dist: Path = DIST, settings: Settings | None = None) -> list[BaseRoute]:
    """The routes of the front end, serving the build in ``dist``."""
    assets = (dist / "assets").resolve()

    gzipped = GzipCache()

    async def asset(request: Request) -> Response:
        name = request.path_params["path"]
        path = (assets / name).resolve()
        if not path.is_relative_to(assets) or not path.is_file():
            return PlainTextResponse("not found\n", 404)
        headers = {"Cache-Control": IMMUTABLE, "Vary": "Accept-Encoding"}
        if path.suffix in COMPRESSIBLE and accepts_gzip(request.headers.get("accept-encoding")):
            body = await run_in_threadpool(gzipped.get, path)
            media_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
            return Response(body, media_type=media_type,
                            headers={**headers, "Content-Encoding": "gzip"})
        return FileResponse(path, headers=headers)

    async def page(request: Request) -> Response:
        index = dist / "index.html"
        if not index.is_file():
            return PlainTextResponse(NOT_BUILT, 503)
        if request.url.path != "/" and not current_principal(request).authenticated:
            back = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(f"/auth/login?return_to={quote(back, safe='/')}", 303)
        return FileResponse(index, headers={"Cache-Control": "no-cache"})

    ui = ui_config(settings or Settings())

    async def api_ui(_request: Request) -> Response:
        return JSONResponse(ui, headers={"Cache-Control": "no-cache"})

    return [
        Route("/", page),
        Route("/audit", page),
        Route("/api/ui", api_ui),
        Route(PREFIX + "/assets/{path:path}", asset),
        Route(PREFIX, page),
        Route(PREFIX + "/{path:path}", page),
    ]
