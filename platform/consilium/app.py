"""Assembles the web application: routes of every domain, authentication, Socket.IO, the dev
identity provider when configured. No logic here."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route

from consilium import __version__
from consilium.archive import catalog
from consilium.archive.access import Reader
from consilium.archive.dicomweb import BASE_PATH, dicomweb_routes
from consilium.archive.remote_routes import remote_routes
from consilium.audit import Actor, AuditAction
from consilium.consult.documents import MIB, DocumentsConfig, retry_archiving, sweep_partial_files
from consilium.consult.models import Priority
from consilium.consult.pdf_text import PdfText
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
from consilium.history.worklist import worklist_routes
from consilium.identity.middleware import AuthenticationMiddleware, client_address
from consilium.identity.policy import Principal, may_read_audit
from consilium.identity.ratelimit import UnauthenticatedAudit
from consilium.identity.routes import identity_routes
from consilium.identity.tokens import ProviderDirectory
from consilium.identity.web import current_principal
from consilium.live.notify import CaseNotifier
from consilium.live.socket import create_socket_app
from consilium.openapi import openapi_document
from consilium.render.routes import BASE_PATH as RENDER_PATH
from consilium.render.routes import render_routes
from consilium.service import Runtime
from consilium.status import status_routes
from consilium.web_static import viewer_routes


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
                        {i.id: i.name for i in settings.institutions}, settings.storage_fsync,
                        PdfText(settings.ui_default_language, settings.ui_time_zone)))


def create_app(runtime: Runtime) -> Any:
    settings = runtime.settings
    directory = ProviderDirectory(settings.effective_identity_providers)
    anonymous_audit = UnauthenticatedAudit(  # one limit for every unauthenticated audit writer
        runtime.audit, settings.identity_unauthenticated_audit_per_minute, settings.live_redis_url)
    notifier = CaseNotifier()
    consult_ctx = consult_context(runtime)

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
            return Response(to_csv(rows, settings.ui_time_zone),
                            media_type="text/csv; charset=utf-8", headers={
                "Content-Disposition": 'attachment; filename="consilium-audit.csv"'})
        return JSONResponse(rows)

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
            return Response(history_csv(data, settings.ui_time_zone),
                            media_type="text/csv; charset=utf-8", headers={
                                "Content-Disposition": 'attachment; filename="consilium-' + (
                                    "turnaround" if request.path_params["what"] == "turnaround"
                                    else "cases") + '.csv"'})
        return JSONResponse(data)

    async def openapi(_request: Request) -> JSONResponse:
        return JSONResponse(openapi_document())

    routes: list[Any] = [
        Route("/openapi.json", openapi),
        Route("/healthz", health),
        Route("/api/studies", api_studies),
        Route("/api/audit", api_audit),
        Route("/api/history/{what:str}", api_history),
        Mount(BASE_PATH, routes=dicomweb_routes(runtime)),
        Mount(RENDER_PATH, routes=render_routes(runtime)),
        *remote_routes(runtime),
        *identity_routes(settings, runtime.engine, directory, runtime.audit, anonymous_audit),
        *consult_routes(consult_ctx, notifier.case_changed),
        *status_routes(settings, runtime.engine),
        *worklist_routes(runtime.engine),
        *viewer_routes(settings=settings),
    ]
    if settings.identity_dev_idp:
        from consilium.identity.devidp import dev_idp_routes

        routes.append(Mount("/dev-idp", routes=dev_idp_routes(
            f"{settings.effective_public_url}/dev-idp", settings.effective_public_url,
            settings.data_dir / "dev-idp", default_language=settings.ui_default_language)))

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
    combined = create_socket_app(app, directory, runtime, notifier)
    return AuthenticationMiddleware(combined, settings, runtime.engine, directory, runtime.audit,
                                    anonymous_audit)
