"""What the JSON API's thin adapters share: a signed-in caller, request bodies read within a
size limit and validated against their declared model once, answers from their public model,
and the caller as an audit actor.

Errors are raised, never rendered here: :mod:`consilium.edge` answers every
:class:`~consilium.errors.DomainError` (and records a "not found")."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from consilium.audit import Actor
from consilium.errors import InvalidInput, PayloadTooLarge
from consilium.identity.middleware import client_address
from consilium.identity.policy import Principal
from consilium.identity.web import signed_in_principal

JSON_MAX_BYTES = 1024 * 1024  # the default of http.max_json_kb

Endpoint = Callable[[Request], Awaitable[Response]]
M = TypeVar("M", bound=BaseModel)


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


def json_response(value: Any, status_code: int = 200) -> JSONResponse:
    """``value`` as JSON; models (also inside lists and dicts) by their JSON dump."""
    return JSONResponse(_plain(value), status_code=status_code)


def _plain(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


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


async def read_model(request: Request, model: type[M]) -> M:
    """The body as ``model``, validated once here: 413 over the size limit, 400 when it is not
    a JSON object or does not match the model (the message names each offending field).
    Strict: a number is not a string nor a string a number; unknown fields are ignored."""
    limit = json_limit(request)
    body = await read_limited(request, limit, "the JSON body")
    try:
        parsed = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidInput("the body is not JSON") from exc
    if not isinstance(parsed, dict):
        raise InvalidInput("the body must be a JSON object")
    try:
        return model.model_validate_json(body, strict=True)
    except ValidationError as exc:
        raise InvalidInput(describe(exc.errors(include_url=False))) from exc


def describe(errors: Sequence[Any]) -> str:
    """Pydantic's errors as one line: ``'question': must not be blank; ...``."""
    parts = []
    for error in errors[:5]:
        where = ".".join(str(p) for p in error.get("loc", ())) or "body"
        message = str(error.get("msg", "invalid"))
        message = message.removeprefix("Value error, ")
        parts.append(f"'{where}': {message}")
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    return "; ".join(parts) + more
