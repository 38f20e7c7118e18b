"""JSON in and out of the HTTP API, with no notion of who calls: request bodies read within a
size limit and validated against their declared model once, answers from public models.

Below the domains (it imports none), so that every HTTP adapter, identity's own too, reads and
answers JSON one way; who the caller is comes from :mod:`consilium.identity.web`, and both are
offered together to the domains' adapters by :mod:`consilium.http_api`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse

from consilium.errors import InvalidInput, PayloadTooLarge

JSON_MAX_BYTES = 1024 * 1024  # the default of http.max_json_kb

M = TypeVar("M", bound=BaseModel)


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
