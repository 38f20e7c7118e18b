"""What the JSON API's thin adapters share: a signed-in caller, domain errors as
``{"error": reason}`` with their status, the caller as an audit actor, and request bodies read
within a size limit (:func:`read_limited`, :func:`read_json`: 413 past it)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from consilium.audit import Actor
from consilium.errors import DomainError, InvalidInput, NotAuthenticated, PayloadTooLarge
from consilium.identity.middleware import client_address
from consilium.identity.policy import Principal
from consilium.identity.web import current_principal

JSON_MAX_BYTES = 1024 * 1024  # the default of http.max_json_kb

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


async def read_limited(request: Request, max_bytes: int, what: str = "the body") -> bytes:
    """The request body, refused with :class:`PayloadTooLarge` (413) as soon as the declared
    length or the bytes received pass ``max_bytes``: never buffered further."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise PayloadTooLarge(f"{what} is over the limit of {max_bytes} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise PayloadTooLarge(f"{what} is over the limit of {max_bytes} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def json_limit(request: Request) -> int:
    """``http.max_json_kb`` as the app put it in its state (:data:`JSON_MAX_BYTES` without)."""
    return int(getattr(request.app.state, "json_max_bytes", JSON_MAX_BYTES))


async def read_json(request: Request, max_bytes: int | None = None) -> Any:
    """The JSON body within ``max_bytes`` (default: ``http.max_json_kb``); 413 past it, 400 if
    it is not JSON."""
    limit = json_limit(request) if max_bytes is None else max_bytes
    body = await read_limited(request, limit, "the JSON body")
    try:
        return json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidInput("the body is not JSON") from exc
