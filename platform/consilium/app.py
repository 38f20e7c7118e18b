"""Assembles the web application: routes of every domain, authentication, Socket.IO, the dev
identity provider when configured. No logic here."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import timedelta
from html import escape
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Mount, Route

from consilium import __version__
from consilium.archive import catalog
from consilium.archive.access import Reader
from consilium.archive.dicomweb import BASE_PATH, dicomweb_routes
from consilium.archive.remote_routes import remote_routes
from consilium.audit import Actor, AuditAction
from consilium.consult.documents import MIB, DocumentsConfig, retry_archiving, sweep_partial_files
from consilium.consult.models import Priority
from consilium.consult.routes import consult_routes
from consilium.consult.workflow import ConsultContext
from consilium.history.audit_search import (
    AuditFilter,
    parse_audit_query,
    search_audit,
    to_csv,
)
from consilium.history.consult_stats import CaseFilter, parse_grouping, turnaround
from consilium.history.consult_stats import cases as history_cases
from consilium.history.consult_stats import to_csv as history_csv
from consilium.identity.middleware import AuthenticationMiddleware, client_address
from consilium.identity.policy import Principal, may_read_audit
from consilium.identity.ratelimit import UnauthenticatedAudit
from consilium.identity.routes import identity_routes
from consilium.identity.tokens import ProviderDirectory
from consilium.identity.web import current_principal
from consilium.live.notify import CaseNotifier
from consilium.live.routes import live_routes
from consilium.live.socket import create_socket_app, live_hub
from consilium.openapi import openapi_document
from consilium.render.routes import BASE_PATH as RENDER_PATH
from consilium.render.routes import render_routes
from consilium.service import Runtime
from consilium.web_static import viewer_routes

PAGE_STYLE = (
    "<style>body{font-family:system-ui,sans-serif;margin:1.5rem;max-width:70rem}"
    "table{border-collapse:collapse}td,th{border-bottom:1px solid #ddd;padding:.3rem .6rem;"
    "text-align:left}</style>"
)


def actor_of(request: Request, principal: Principal) -> Actor:
    return Actor(principal.subject, principal.display_name, principal.institution_id or "",
                 client_address(request.scope), "web")


def consult_context(runtime: Runtime) -> ConsultContext:
    settings = runtime.settings
    sweep_partial_files(settings.data_dir / "attachments")
    return ConsultContext(
        runtime.engine, runtime.audit,
        {Priority.EMERGENCY: settings.consult_due_hours_emergency,
         Priority.URGENT: settings.consult_due_hours_urgent,
         Priority.ROUTINE: settings.consult_due_hours_routine},
        timedelta(days=settings.consult_grant_retention_days),
        DocumentsConfig(runtime.store, settings.data_dir / "attachments",
                        int(settings.consult_attachment_max_mb * MIB),
                        {i.id: i.name for i in settings.institutions}, settings.storage_fsync))


def create_app(runtime: Runtime) -> Any:
    settings = runtime.settings
    directory = ProviderDirectory(settings.effective_identity_providers)
    anonymous_audit = UnauthenticatedAudit(  # one limit for every unauthenticated audit writer
        runtime.audit, settings.identity_unauthenticated_audit_per_minute, settings.live_redis_url)
    notifier = CaseNotifier()
    consult_ctx = consult_context(runtime)
    live = live_hub(runtime, notifier)

    async def health(_request: Request) -> JSONResponse:
        n_studies, n_instances = await anyio.to_thread.run_sync(catalog.counts, runtime.engine)
        return JSONResponse({"status": "ok", "version": __version__, "studies": n_studies,
                             "instances": n_instances})

    async def studies_for(request: Request) -> list[dict[str, Any]]:
        """The caller's study list through the gate (which records the query)."""
        return await anyio.to_thread.run_sync(runtime.access.visible_studies,
                                              Reader.of_connection(request, "web"))

    async def api_studies(request: Request) -> JSONResponse:
        principal = current_principal(request)
        if not principal.authenticated:
            return JSONResponse({"error": "not authenticated"}, 401)
        return JSONResponse(await studies_for(request))

    async def home(request: Request) -> HTMLResponse:
        principal = current_principal(request)
        ae = escape(settings.dicom_ae_title)
        head = (f"<!doctype html><meta charset=utf-8><title>Consilium</title>{PAGE_STYLE}"
                f"<h1>Consilium</h1><p>DICOM archive: AE title <b>{ae}</b>, "
                f"port <b>{settings.dicom_port}</b>.</p>")
        if not principal.authenticated:
            return HTMLResponse(head + '<p><a id="login" href="/auth/login">Log in</a></p>')
        rows = await studies_for(request)
        body = "".join(
            f"<tr><td>{escape(str(r['patient_name']))}</td><td>{escape(str(r['patient_id']))}"
            f"</td><td>{escape(str(r['study_date']))}</td><td>{escape(str(r['modalities']))}</td>"
            f"<td>{escape(str(r['description']))}</td><td>{r['num_instances']}</td></tr>"
            for r in rows
        )
        audit_link = '<a href="/audit">Audit trail</a> · ' if may_read_audit(principal) else ""
        return HTMLResponse(
            head + f'<p id="who">{escape(principal.display_name)} · '
            f"{escape(principal.institution_id or '')} · "
            f"{escape(', '.join(sorted(principal.roles)))}"
            f'</p><p><a id="viewer" href="/viewer">Open the viewer</a> · '
            f'{audit_link}<button id="logout">Log out</button></p>'
            f'<table id="studies"><tr><th>Patient</th><th>ID</th><th>Date</th><th>Modalities</th>'
            f"<th>Description</th><th>Images</th></tr>{body}</table>"
            "<script>document.getElementById('logout').onclick=async()=>{"
            "const me=await (await fetch('/api/me')).json();"
            "const r=await fetch('/auth/logout',{method:'POST',headers:{'X-CSRF-Token':"
            "me.csrf_token,'Accept':'application/json'}});"
            "location=(await r.json()).next;};</script>"
        )

    def audit_filter(request: Request, principal: Principal) -> AuditFilter:
        return parse_audit_query(request.query_params, principal.institution_id or "",
                                 principal.has_role("admin"))

    async def api_audit(request: Request) -> Response:
        principal = current_principal(request)
        if not principal.authenticated:
            return JSONResponse({"error": "not authenticated"}, 401)
        if not may_read_audit(principal):
            return JSONResponse({"error": "forbidden"}, 403)
        try:
            flt = audit_filter(request, principal)
        except ValueError as exc:
            return JSONResponse({"error": f"bad parameter: {exc}"}, 400)
        await anyio.to_thread.run_sync(runtime.audit.flush)  # the search sees what was done
        rows = search_audit(runtime.engine, flt)
        if request.query_params.get("format") == "csv":
            runtime.audit.record(actor_of(request, principal), AuditAction.EXPORT,
                                 detail={"what": "audit csv", "rows": len(rows)})
            return Response(to_csv(rows), media_type="text/csv; charset=utf-8", headers={
                "Content-Disposition": 'attachment; filename="consilium-audit.csv"'})
        return JSONResponse(rows)

    async def audit_page(request: Request) -> HTMLResponse:
        principal = current_principal(request)
        if not may_read_audit(principal):
            return HTMLResponse("<p>Forbidden</p>", 403 if principal.authenticated else 401)
        try:
            flt = audit_filter(request, principal)
            await anyio.to_thread.run_sync(runtime.audit.flush)
            rows = search_audit(runtime.engine, flt)
        except ValueError as exc:
            return HTMLResponse(f"<p>Bad parameter: {escape(str(exc))}</p>", 400)
        q = request.query_params
        cells = "".join(
            "<tr>" + "".join(f"<td>{escape(str(r[c]))}</td>" for c in (
                "at", "action", "outcome", "actor_name", "actor_institution", "source",
                "patient_id", "study_uid")) + "</tr>"
            for r in rows)
        return HTMLResponse(
            f"<!doctype html><meta charset=utf-8><title>Audit trail</title>{PAGE_STYLE}"
            "<h1>Audit trail</h1><form>"
            f'<input name="patient_id" placeholder="Patient ID" '
            f'value="{escape(q.get("patient_id", ""))}">'
            f'<input name="study_uid" placeholder="Study UID" '
            f'value="{escape(q.get("study_uid", ""))}">'
            '<button>Search</button></form>'
            f'<p><a href="/api/audit?{escape(str(request.query_params))}&format=csv">CSV</a></p>'
            "<table><tr><th>When</th><th>Action</th><th>Outcome</th><th>Who</th>"
            f"<th>Institution</th><th>From</th><th>Patient</th><th>Study</th></tr>{cells}</table>")

    def history_filter(request: Request, principal: Principal) -> CaseFilter:
        from datetime import datetime

        q = request.query_params

        def when(name: str) -> datetime | None:
            return datetime.fromisoformat(q[name]) if q.get(name) else None

        return CaseFilter(
            status=q.get("status", ""),
            priority=q.get("priority", ""), other_institution=q.get("institution", ""),
            specialty=q.get("specialty", ""), person=q.get("person", ""),
            since=when("since"), until=when("until"))

    async def api_history(request: Request) -> Response:
        """Heads: the cases their institution sent or received (``/cases``) and turnaround
        figures (``/turnaround``); ``format=csv`` exports either."""
        principal = current_principal(request)
        if not principal.authenticated:
            return JSONResponse({"error": "not authenticated"}, 401)
        if not principal.has_role("head"):
            return JSONResponse({"error": "for heads of department"}, 403)
        try:
            rows = history_cases(runtime.engine, principal, history_filter(request, principal))
            grouping = parse_grouping(request.query_params.get("group"))
        except ValueError as exc:
            return JSONResponse({"error": f"bad parameter: {exc}"}, 400)
        if request.path_params["what"] == "turnaround":
            data = turnaround(rows, group_by=grouping)
        else:
            data = [{k: (v.isoformat() if hasattr(v, "isoformat") else v)
                     for k, v in c.model_dump().items()} for c in rows]
        if request.query_params.get("format") == "csv":
            runtime.audit.record(actor_of(request, principal), AuditAction.EXPORT,
                                 detail={"what": f"history {request.path_params['what']} csv"})
            return Response(history_csv(data), media_type="text/csv; charset=utf-8")
        return JSONResponse(data)

    async def openapi(_request: Request) -> JSONResponse:
        return JSONResponse(openapi_document())

    routes: list[Any] = [
        Route("/", home),
        Route("/openapi.json", openapi),
        Route("/healthz", health),
        Route("/api/studies", api_studies),
        Route("/api/audit", api_audit),
        Route("/api/history/{what:str}", api_history),
        Route("/audit", audit_page),
        Mount(BASE_PATH, routes=dicomweb_routes(runtime)),
        Mount(RENDER_PATH, routes=render_routes(runtime)),
        *remote_routes(runtime),
        *live_routes(live.ctx, live),  # before the consult routes' /api/cases/{id}/{action}
        *identity_routes(settings, runtime.engine, directory, runtime.audit, anonymous_audit),
        *consult_routes(consult_ctx, notifier.case_changed),
        *viewer_routes(),
    ]
    if settings.identity_dev_idp:
        from consilium.identity.devidp import dev_idp_routes

        routes.append(Mount("/dev-idp", routes=dev_idp_routes(
            f"{settings.effective_public_url}/dev-idp", settings.effective_public_url,
            settings.data_dir / "dev-idp")))

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        # conclusions that could not be written into the archive before (in the background)
        retrying = asyncio.get_running_loop().run_in_executor(None, retry_archiving, consult_ctx)
        yield
        await retrying
        await anyio.to_thread.run_sync(runtime.audit.flush)
        await directory.aclose()

    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.runtime = runtime
    app.state.directory = directory
    combined = create_socket_app(app, directory, runtime, notifier, live)
    return AuthenticationMiddleware(combined, settings, runtime.engine, directory, runtime.audit,
                                    anonymous_audit)
