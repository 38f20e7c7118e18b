"""What the JSON API's thin adapters share: a signed-in caller, domain errors as
``{"error": reason}`` with their status, and the caller as an audit actor.

Every "not found" answered to a signed-in caller is on record: the archive's gate records its
own refusals (its errors say so with ``audited``); any other (a case, an attachment, a PDF that
is another institution's or does not exist) is recorded here, as what was asked (the method
and path), the same row for foreign and missing."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from consilium.audit import Actor, AuditAction, AuditOutcome, AuditTrail
from consilium.errors import DomainError, NotAuthenticated, NotFound
from consilium.identity.middleware import client_address
from consilium.identity.policy import Principal
from consilium.identity.web import current_principal

Endpoint = Callable[[Request], Awaitable[Response]]


def signed_in(handler: Callable[[Request, Principal], Awaitable[Response]],
              audit: AuditTrail | None = None) -> Endpoint:
    """An endpoint for signed-in callers (401 otherwise); a :class:`DomainError` raised by the
    handler answers its status with the reason. With ``audit``, a "not found" is recorded."""
    async def endpoint(request: Request) -> Response:
        principal = current_principal(request)
        try:
            if not principal.authenticated:
                raise NotAuthenticated("not authenticated")
            return await handler(request, principal)
        except DomainError as exc:
            if audit is not None and isinstance(exc, NotFound) and not exc.audited:
                not_found(audit, request, principal, exc)
            return JSONResponse({"error": exc.message}, status_code=exc.status)
    return endpoint


def json_endpoint(handler: Callable[[Request, Principal], Awaitable[Any]],
                  audit: AuditTrail | None = None) -> Endpoint:
    """:func:`signed_in`, answering the handler's value as JSON."""
    async def answer(request: Request, principal: Principal) -> Response:
        return JSONResponse(await handler(request, principal))
    return signed_in(answer, audit)


def not_found(audit: AuditTrail, request: Request, principal: Principal,
              error: NotFound) -> None:
    """The ``denied`` event of a "not found": what was asked, nothing of what exists."""
    audit.submit(web_actor(request, principal), AuditAction.DENIED, AuditOutcome.DENIED,
                 detail={"what": "not found", "method": request.method,
                         "path": request.url.path[:500], "reason": error.message})


def web_actor(request: Request, principal: Principal) -> Actor:
    """The caller as the audit trail names them."""
    return Actor(principal.subject, principal.display_name, principal.institution_id or "",
                 client_address(request.scope), "web")
