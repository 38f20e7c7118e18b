"""What the JSON API's thin adapters share: a signed-in caller, domain errors as
``{"error": reason}`` with their status, and the caller as an audit actor."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from consilium.audit import Actor
from consilium.errors import DomainError, NotAuthenticated
from consilium.identity.middleware import client_address
from consilium.identity.policy import Principal
from consilium.identity.web import current_principal

Endpoint = Callable[[Request], Awaitable[Response]]


def signed_in(handler: Callable[[Request, Principal], Awaitable[Response]]) -> Endpoint:
    """An endpoint for signed-in callers (401 otherwise); a :class:`DomainError` raised by the
    handler answers its status with the reason."""
    async def endpoint(request: Request) -> Response:
        principal = current_principal(request)
        try:
            if not principal.authenticated:
                raise NotAuthenticated("not authenticated")
            return await handler(request, principal)
        except DomainError as exc:
            return JSONResponse({"error": exc.message}, status_code=exc.status)
    return endpoint


def json_endpoint(handler: Callable[[Request, Principal], Awaitable[Any]]) -> Endpoint:
    """:func:`signed_in`, answering the handler's value as JSON."""
    async def answer(request: Request, principal: Principal) -> Response:
        return JSONResponse(await handler(request, principal))
    return signed_in(answer)


def web_actor(request: Request, principal: Principal) -> Actor:
    """The caller as the audit trail names them."""
    return Actor(principal.subject, principal.display_name, principal.institution_id or "",
                 client_address(request.scope), "web")
