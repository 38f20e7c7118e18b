"""How a web request becomes a :class:`Principal` (put there by :mod:`.middleware`), and the
endpoints of signed-in callers: the caller refused with 401 unless signed in, answered as JSON,
named as an audit actor.

Here, in identity, so that identity's own HTTP adapters use them as the other domains' do
(those take them from :mod:`consilium.http_api`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import HTTPConnection, Request
from starlette.responses import Response
from starlette.types import Scope

from consilium.audit import Actor
from consilium.errors import NotAuthenticated
from consilium.http_json import json_response
from consilium.identity.policy import ANONYMOUS, Principal

PRINCIPAL_SCOPE_KEY = "consilium.principal"

Endpoint = Callable[[Request], Awaitable[Response]]


def client_address(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else ""


def current_principal(connection: HTTPConnection) -> Principal:
    """The caller of this request or websocket; the authentication middleware sets it."""
    principal = connection.scope.get(PRINCIPAL_SCOPE_KEY)
    return principal if isinstance(principal, Principal) else ANONYMOUS


def signed_in_principal(connection: HTTPConnection) -> Principal:
    """The caller, who must be signed in: :class:`NotAuthenticated` (401) otherwise."""
    principal = current_principal(connection)
    if not principal.authenticated:
        raise NotAuthenticated("not authenticated")
    return principal


def signed_in(handler: Callable[[Request, Principal], Awaitable[Response]]) -> Endpoint:
    """An endpoint for signed-in callers (401 otherwise)."""
    async def endpoint(request: Request) -> Response:
        return await handler(request, signed_in_principal(request))
    return endpoint


def json_endpoint(handler: Callable[[Request, Principal], Awaitable[Any]]) -> Endpoint:
    """:func:`signed_in`, answering the handler's value as JSON (a public model, a list of
    them, or plain JSON data)."""
    async def answer(request: Request, principal: Principal) -> Response:
        return json_response(await handler(request, principal))
    return signed_in(answer)


def web_actor(request: Request, principal: Principal) -> Actor:
    """The caller as the audit trail names them."""
    return Actor(principal.subject, principal.display_name, principal.institution_id or "",
                 client_address(request.scope), "web")
