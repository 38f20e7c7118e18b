"""Assembles the web application: routes of every domain, the one error edge
(:mod:`consilium.edge`), authentication, Socket.IO, the dev identity provider when configured.
No logic here."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from html import escape
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse
from starlette.routing import Mount, Route

from consilium.archive.dicomweb import BASE_PATH, dicomweb_routes
from consilium.archive.federation import sources as federation_sources
from consilium.archive.federation_routes import CaseAccess, federation_routes
from consilium.archive.media_routes import media_routes
from consilium.archive.prefetch import Prefetch
from consilium.archive.remote_routes import remote_routes
from consilium.archive.retrieval import Retrievals
from consilium.archive.routes import archive_routes
from consilium.archive.routes import studies_for as archive_studies_for
from consilium.archive.worklist_routes import worklist_routes
from consilium.consult.archiving import retry_archiving
from consilium.consult.context import consult_context
from consilium.consult.files import sweep_partial_files
from consilium.consult.reading import case_view
from consilium.consult.routes import consult_routes
from consilium.edge import UnexpectedErrors, exception_handlers
from consilium.errors import InvalidInput
from consilium.history.routes import audit_filter, audit_rows, history_routes
from consilium.identity.middleware import AuthenticationMiddleware
from consilium.identity.policy import may_read_audit
from consilium.identity.ratelimit import UnauthenticatedAudit
from consilium.identity.routes import identity_routes
from consilium.identity.service_routes import service_token_routes
from consilium.identity.tokens import ProviderDirectory
from consilium.identity.web import current_principal
from consilium.live.notify import CaseNotifier
from consilium.live.socket import create_socket_app
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


def create_app(runtime: Runtime) -> Any:
    settings = runtime.settings
    directory = ProviderDirectory(settings.effective_identity_providers)
    anonymous_audit = UnauthenticatedAudit(  # one limit for every unauthenticated audit writer
        runtime.audit, settings.identity_unauthenticated_audit_per_minute, settings.live_redis_url)
    notifier = CaseNotifier()
    retrievals = Retrievals(settings, runtime.store, runtime.audit)  # PACS -> archive, jobs
    prefetcher = Prefetch(runtime.engine, runtime.audit, retrievals,
                          {s.id: s for s in federation_sources(settings)})
    sweep_partial_files(settings.data_dir / "attachments")

    def told(case: Any, what: str) -> None:  # the consult domain's changes: live, prefetch
        notifier.notify(case, what)
        prefetcher.on_case(case.id or 0, what, case.target_institution)

    consult_ctx = consult_context(settings, runtime.engine, runtime.audit, runtime.store, told)

    def case_access(principal: Any, case_id: int) -> CaseAccess:
        view = case_view(consult_ctx, principal, case_id)  # NotFound for a case not visible
        return CaseAccess(view.case.target_institution, "edit" in view.allowed_actions)

    async def studies_for(request: Request) -> list[dict[str, Any]]:
        return await archive_studies_for(runtime.access, request)

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

    async def audit_page(request: Request) -> HTMLResponse:
        principal = current_principal(request)
        if not may_read_audit(principal):
            return HTMLResponse("<p>Forbidden</p>", 403 if principal.authenticated else 401)
        try:
            flt = audit_filter(request, principal)
            rows = await anyio.to_thread.run_sync(audit_rows, runtime.engine, runtime.audit, flt)
        except InvalidInput as exc:
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

    async def openapi(_request: Request) -> JSONResponse:
        return JSONResponse(openapi_document())

    routes: list[Any] = [
        Route("/", home),
        Route("/openapi.json", openapi),
        Route("/audit", audit_page),
        *archive_routes(runtime.engine, runtime.access),
        *history_routes(runtime.engine, runtime.audit),
        Mount(BASE_PATH, routes=dicomweb_routes(runtime)),
        Mount(RENDER_PATH, routes=render_routes(runtime)),
        *remote_routes(runtime),
        *worklist_routes(runtime),
        *federation_routes(runtime, retrievals, case_access),
        *media_routes(runtime),
        *service_token_routes(runtime.engine, runtime.audit),
        *identity_routes(settings, runtime.engine, directory, runtime.audit, anonymous_audit),
        *consult_routes(consult_ctx),
        *viewer_routes(),
    ]
    if settings.identity_dev_idp:
        from consilium.identity.devidp import dev_idp_routes

        routes.append(Mount("/dev-idp", routes=dev_idp_routes(
            f"{settings.effective_public_url}/dev-idp", settings.effective_public_url,
            settings.data_dir / "dev-idp")))

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        notifier.bind(asyncio.get_running_loop())  # the consult domain notifies from threads
        # conclusions that could not be written into the archive before (in the background)
        retrying = asyncio.get_running_loop().run_in_executor(None, retry_archiving, consult_ctx)
        yield
        await retrying
        retrievals.close()
        notifier.bind(None)
        await anyio.to_thread.run_sync(runtime.audit.flush)
        await directory.aclose()

    app = Starlette(routes=routes, lifespan=lifespan,
                    exception_handlers=exception_handlers(runtime.audit),
                    middleware=[Middleware(UnexpectedErrors)])
    app.state.runtime = runtime
    app.state.consult = consult_ctx  # the consult domain's context (tests call it directly)
    app.state.json_max_bytes = settings.http_max_json_kb * 1024  # http_api.read_json
    app.state.directory = directory
    app.state.retrievals = retrievals
    combined = create_socket_app(app, directory, runtime, notifier)
    return AuthenticationMiddleware(combined, settings, runtime.engine, directory, runtime.audit,
                                    anonymous_audit)
