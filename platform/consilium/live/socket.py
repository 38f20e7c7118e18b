"""The Socket.IO endpoint (``/socket.io``). Connections authenticate like HTTP requests: the
session cookie or a bearer token (in the ``Authorization`` header, or ``auth: {token}`` for
browsers' socket.io-client), checked by the same middleware and token code. Anonymous
connections are refused. Consult cases notify their parties here (:mod:`consilium.live.notify`);
live consilium sessions have their own namespace, ``/consilium`` (:mod:`consilium.live.namespace`,
protocol in ``docs/live-consilium.md``)."""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta
from typing import Any

import anyio
import socketio
from sqlalchemy import Engine
from sqlmodel import Session

from consilium.archive.access import ArchiveAccess
from consilium.audit import AuditTrail
from consilium.consult.models import ConsultCase
from consilium.identity.policy import Principal
from consilium.identity.tokens import ProviderDirectory, TokenError
from consilium.identity.users import LoginRefused, map_claims, principal_of_claims
from consilium.identity.web import PRINCIPAL_SCOPE_KEY
from consilium.live.hub import LiveHub
from consilium.live.namespace import ConsiliumNamespace
from consilium.live.notify import CaseNotifier, rooms_of
from consilium.live.render_share import prepare_session
from consilium.live.sessions import LiveContext
from consilium.render.events import register_render_events
from consilium.render.service import RenderService
from consilium.settings import Settings

log = logging.getLogger(__name__)

EVT_WHOAMI = "whoami"


def client_manager(redis_url: str) -> Any:
    """With several web processes, rooms span them through Redis publish/subscribe: a case
    notification emitted by the process that handled the request reaches every process's
    clients. Without Redis, python-socketio keeps rooms in the process."""
    if not redis_url:
        return None
    log.info("Socket.IO rooms shared through Redis %s", redis_url.split("@")[-1])
    return socketio.AsyncRedisManager(redis_url, channel="consilium-socketio")


def live_context(settings: Settings, engine: Engine, audit: AuditTrail,
                 access: ArchiveAccess) -> LiveContext:
    """The live domain's context in this process, from its settings."""
    return LiveContext(
        engine, audit, access, settings.effective_public_url,
        max_session=timedelta(hours=settings.live_session_max_hours),
        retention=timedelta(minutes=settings.live_invitation_retention_minutes),
        process_id=uuid.uuid4().hex[:16])


def live_hub(settings: Settings, ctx: LiveContext, render: RenderService,
             notifier: CaseNotifier | None = None) -> LiveHub:
    """The live sessions of this process (the Socket.IO server is attached later)."""

    async def prewarm(_session_id: str, study_uids: list[str]) -> None:
        await prepare_session(render, study_uids, settings.live_prewarm_series)

    async def notify_case(case_id: int, what: str) -> None:
        if notifier is None:
            return
        def load() -> ConsultCase | None:
            with Session(ctx.engine) as db:
                return db.get(ConsultCase, case_id)
        case = await anyio.to_thread.run_sync(load)
        if case is not None:
            notifier.notify(case, what)  # hands the emission to this loop

    return LiveHub(ctx, None, settings.live_redis_url, settings.live_coalesce_ms / 1000.0,
                   prewarm=prewarm if settings.live_prewarm_series > 0 else None,
                   prewarm_lead=timedelta(minutes=settings.live_prewarm_minutes),
                   notify_case=notify_case)


def create_socket_app(other_app: Any, directory: ProviderDirectory, settings: Settings,
                      render: RenderService, notifier: CaseNotifier | None = None,
                      live: LiveHub | None = None) -> Any:
    sio = socketio.AsyncServer(
        async_mode="asgi", cors_allowed_origins=[settings.effective_public_url],
        client_manager=client_manager(settings.live_redis_url))
    if notifier is not None:
        notifier.attach(sio)

    async def principal_for(environ: dict[str, Any], auth: Any) -> Principal | None:
        scope = environ.get("asgi.scope", {})
        principal = scope.get(PRINCIPAL_SCOPE_KEY)
        if isinstance(principal, Principal) and principal.authenticated:
            return principal
        token = auth.get("token") if isinstance(auth, dict) else None
        if isinstance(token, str) and token:
            try:
                provider, claims = await directory.validate_bearer(token)
                return principal_of_claims(provider, map_claims(settings, provider, claims))
            except (TokenError, LoginRefused) as exc:
                log.warning("socket token refused: %s", exc)
        return None

    @sio.event  # type: ignore[untyped-decorator]
    async def connect(sid: str, environ: dict[str, Any], auth: Any = None) -> bool:
        principal = await principal_for(environ, auth)
        if principal is None:
            raise socketio.exceptions.ConnectionRefusedError("authentication required")
        await sio.save_session(sid, {"principal": principal})
        for room in rooms_of(principal):
            await sio.enter_room(sid, room)
        return True

    @sio.on(EVT_WHOAMI)  # type: ignore[untyped-decorator]
    async def whoami(sid: str, _data: Any = None) -> dict[str, Any]:
        session = await sio.get_session(sid)
        principal: Principal = session["principal"]
        return {"subject": principal.subject, "institution": principal.institution_id,
                "roles": sorted(principal.roles)}

    render_events = register_render_events(sio, render)
    if live is not None:
        live.sio = sio
        ConsiliumNamespace(sio, live, principal_for, lambda: render).register()

    @sio.event  # type: ignore[untyped-decorator]
    async def disconnect(sid: str, _reason: Any = None) -> None:
        await render_events.disconnect(sid)

    return socketio.ASGIApp(sio, other_asgi_app=other_app, socketio_path="socket.io")
