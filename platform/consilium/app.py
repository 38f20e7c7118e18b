"""Assembles the web application: routes of every domain, the one error edge
(:mod:`consilium.edge`), authentication, Socket.IO, the dev identity provider when configured.
No logic here."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route

from consilium.archive.dicomweb import BASE_PATH, dicomweb_routes
from consilium.archive.federation import sources as federation_sources
from consilium.archive.federation_routes import CaseAccess, federation_routes
from consilium.archive.media_routes import media_routes
from consilium.archive.prefetch import Prefetch
from consilium.archive.remote_routes import remote_routes
from consilium.archive.retrieval import Retrievals
from consilium.archive.routes import archive_routes
from consilium.archive.worklist_routes import worklist_routes as modality_worklist_routes
from consilium.consult.archiving import retry_archiving
from consilium.consult.context import consult_context
from consilium.consult.files import sweep_partial_files
from consilium.consult.reading import case_view
from consilium.consult.routes import consult_routes
from consilium.edge import UnexpectedErrors, exception_handlers
from consilium.history.routes import history_routes
from consilium.history.worklist import worklist_routes
from consilium.identity.middleware import AuthenticationMiddleware
from consilium.identity.ratelimit import UnauthenticatedAudit
from consilium.identity.routes import identity_routes
from consilium.identity.service_routes import service_token_routes
from consilium.identity.tokens import ProviderDirectory
from consilium.live.notify import CaseNotifier
from consilium.live.protocol_close import retry_protocol_archiving
from consilium.live.protocol_routes import protocol_routes
from consilium.live.routes import live_routes
from consilium.live.socket import create_socket_app, live_context, live_hub
from consilium.openapi import openapi_document
from consilium.render.routes import BASE_PATH as RENDER_PATH
from consilium.render.routes import render_routes
from consilium.render.service import render_service
from consilium.service import Runtime
from consilium.status import status_routes
from consilium.web_static import viewer_routes


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
    render = render_service(settings, runtime.access)  # one bridge to the render workers
    live = live_hub(settings, live_context(settings, runtime.engine, runtime.audit,
                                           runtime.access), render, notifier)
    archive = runtime.archive

    async def openapi(_request: Request) -> JSONResponse:
        return JSONResponse(openapi_document())

    routes: list[Any] = [
        Route("/openapi.json", openapi),
        *archive_routes(runtime.engine, runtime.access),
        *history_routes(runtime.engine, runtime.audit, settings.ui_time_zone),
        Mount(BASE_PATH, routes=dicomweb_routes(archive)),
        Mount(RENDER_PATH, routes=render_routes(render)),
        *remote_routes(archive),
        *live_routes(live.ctx, live),  # before the consult routes' /api/cases/{id}/{action}
        *protocol_routes(live.ctx, live, consult_ctx),
        *modality_worklist_routes(archive),
        *federation_routes(archive, retrievals, case_access),
        *media_routes(archive),
        *service_token_routes(runtime.engine, runtime.audit),
        *identity_routes(settings, runtime.engine, directory, runtime.audit, anonymous_audit),
        *consult_routes(consult_ctx),
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
        notifier.bind(asyncio.get_running_loop())  # the consult domain notifies from threads
        # conclusions that could not be written into the archive before (in the background)
        retrying = asyncio.get_running_loop().run_in_executor(None, retry_archiving, consult_ctx)
        protocols = asyncio.get_running_loop().run_in_executor(  # and consilium protocols
            None, retry_protocol_archiving, live.ctx, consult_ctx)
        yield
        await retrying
        await protocols
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
    combined = create_socket_app(app, directory, settings, render, notifier, live)
    return AuthenticationMiddleware(combined, settings, runtime.engine, directory, runtime.audit,
                                    anonymous_audit)
