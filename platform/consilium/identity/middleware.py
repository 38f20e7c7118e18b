"""Authentication for every HTTP request and websocket: a bearer token (API clients) or the
session cookie (browsers) becomes the :class:`Principal` in the ASGI scope; cookie-authenticated
writes must carry the session's CSRF token. Routes then ask the policy; nothing here grants
access to data by itself.
"""

from __future__ import annotations

import logging
from typing import Any

import anyio
from starlette.datastructures import Headers
from starlette.requests import HTTPConnection
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from consilium.audit import Actor, AuditAction, AuditOutcome, AuditTrail
from consilium.identity.policy import Principal
from consilium.identity.ratelimit import UnauthenticatedAudit, clip
from consilium.identity.services import (
    client_of_claims,
    is_service_token,
    principal_of_token,
    service_principal_of_claims,
)
from consilium.identity.tokens import ProviderDirectory, TokenError
from consilium.identity.users import (
    LoginRefused,
    map_claims,
    principal_of,
    principal_of_claims,
    session_of,
)
from consilium.identity.web import PRINCIPAL_SCOPE_KEY, client_address
from consilium.settings import Settings

log = logging.getLogger(__name__)

SESSION_COOKIE = "consilium_session"
CSRF_HEADER = "x-csrf-token"
SESSION_SCOPE_KEY = "consilium.session"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
CSRF_EXEMPT_PREFIXES = ("/auth/callback/", "/dev-idp/")


class AuthenticationMiddleware:
    def __init__(
        self, app: ASGIApp, settings: Settings, engine: Any, directory: ProviderDirectory,
        audit: AuditTrail, anonymous_audit: UnauthenticatedAudit | None = None,
    ) -> None:
        self.app = app
        self.settings = settings
        self.engine = engine
        self.directory = directory
        self.audit = audit
        self.anonymous_audit = anonymous_audit or UnauthenticatedAudit(
            audit, settings.identity_unauthenticated_audit_per_minute, settings.live_redis_url)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        authorization = headers.get("authorization", "")
        if authorization.lower().startswith("bearer "):
            principal = await self.bearer_principal(authorization[7:].strip(), scope)
            if principal is None:
                await self._reject(scope, receive, send, 401, "invalid_token",
                                   'Bearer error="invalid_token"')
                return
            scope[PRINCIPAL_SCOPE_KEY] = principal
            await self.app(scope, receive, send)
            return
        token = HTTPConnection(scope).cookies.get(SESSION_COOKIE)
        found = session_of(self.engine, token) if token else None
        if found is not None:
            web_session, user = found
            scope[PRINCIPAL_SCOPE_KEY] = principal_of(user)
            scope[SESSION_SCOPE_KEY] = web_session
            if (scope["type"] == "http" and scope["method"] in UNSAFE_METHODS
                    and not scope["path"].startswith(CSRF_EXEMPT_PREFIXES)
                    and not self._csrf_ok(headers, web_session.csrf_token)):
                await self._reject(scope, receive, send, 403, "csrf", None)
                return
        await self.app(scope, receive, send)

    def _csrf_ok(self, headers: Headers, expected: str) -> bool:
        import secrets

        supplied = headers.get(CSRF_HEADER, "")
        if supplied and secrets.compare_digest(supplied, expected):
            origin = headers.get("origin")
            return origin is None or origin == self.settings.effective_public_url
        return False

    async def bearer_principal(self, token: str, scope: Scope) -> Principal | None:
        if is_service_token(token):  # issued by Consilium to a machine (identity.services)
            principal = await anyio.to_thread.run_sync(principal_of_token, self.engine, token)
            if principal is None:
                log.warning("service token refused from %s", client_address(scope))
                await self.anonymous_audit.record(
                    Actor("unknown", source=client_address(scope), channel="api"),
                    AuditAction.LOGIN_FAILED, AuditOutcome.FAILURE,
                    {"reason": "unknown, revoked or expired service token",
                     "method": "service token", "token": token[4:12]},
                )
            return principal
        try:
            provider, claims = await self.directory.validate_bearer(token)
            institution = provider.institution or str(
                claims.get(provider.institution_claim, "") or "")
            if client_of_claims(claims) in provider.service_clients:
                if self.settings.institution(institution) is None:
                    raise LoginRefused(f"institution {institution!r} is not configured")
                service = service_principal_of_claims(provider, claims, institution)
                if service is not None:
                    return service
            mapped = map_claims(self.settings, provider, claims)
        except (TokenError, LoginRefused, KeyError) as exc:
            log.warning("bearer token refused from %s: %s", client_address(scope),
                        clip(str(exc)))
            await self.anonymous_audit.record(
                Actor("unknown", source=client_address(scope), channel="api"),
                AuditAction.LOGIN_FAILED, AuditOutcome.FAILURE,
                {"reason": str(exc), "method": "bearer"},
            )
            return None
        except Exception as exc:  # provider unreachable: refuse, never let it through
            log.error("bearer token check failed: %s", exc)
            return None
        return principal_of_claims(provider, mapped)

    async def _reject(
        self, scope: Scope, receive: Receive, send: Send, status: int, error: str,
        challenge: str | None,
    ) -> None:
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 4401 if status == 401 else 4403})
            return
        response = JSONResponse(
            {"error": error}, status_code=status,
            headers={"WWW-Authenticate": challenge} if challenge else None,
        )
        await response(scope, receive, send)
