"""Assembles the web application: routes of every domain, the static frontend. No logic here."""

from __future__ import annotations

from html import escape

from sqlalchemy import func, select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse
from starlette.routing import Route

from consilium import __version__
from consilium.archive.models import Instance, Study
from consilium.service import Runtime


def create_app(runtime: Runtime) -> Starlette:
    settings = runtime.settings

    async def health(_request: Request) -> JSONResponse:
        with runtime.engine.connect() as conn:
            studies = conn.execute(select(func.count()).select_from(Study)).scalar_one()
            instances = conn.execute(select(func.count()).select_from(Instance)).scalar_one()
        return JSONResponse(
            {"status": "ok", "version": __version__, "studies": studies, "instances": instances}
        )

    async def home(_request: Request) -> HTMLResponse:
        # The web viewer arrives with the DICOMweb/viewer issue; until then, say what runs here.
        ae = escape(settings.dicom_ae_title)
        return HTMLResponse(
            "<!doctype html><meta charset=utf-8><title>Consilium</title>"
            f"<h1>Consilium {__version__}</h1>"
            f"<p>DICOM archive: AE title <b>{ae}</b>, port <b>{settings.dicom_port}</b>.</p>"
            "<p><a href=/healthz>/healthz</a></p>"
        )

    return Starlette(
        routes=[Route("/", home), Route("/healthz", health)],
    )
