"""The web edge: where a domain error becomes an HTTP answer, once for the whole application.

Routes (JSON API, DICOMweb, render) raise :class:`~consilium.errors.DomainError` subclasses and
never build an error response themselves. :func:`exception_handlers` is the Starlette handler
table ``app.py`` installs: one handler keyed by the base class answers every subclass with
its status, its headers (``WWW-Authenticate`` on a 401, ``Retry-After`` on a 503) and
``{"error": message}`` (plus ``"reason"`` where the error names a code), never cached.

A "not found" answered to a signed-in caller is on record: the archive's gate records its
own refusals (its errors say so with ``audited``); any other (a case, an attachment, a PDF,
a PACS that is another institution's or does not exist) is recorded here as what was asked
(method and path), the same row for foreign and missing.

Anything else that escapes a route is a bug: :class:`UnexpectedErrors` logs it once, with
the request line, and answers 500 with no detail (the traceback is in the server log only).
"""

from __future__ import annotations

import logging
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from consilium.audit import AuditAction, AuditOutcome, AuditTrail
from consilium.errors import DomainError, NotFound
from consilium.http_api import web_actor
from consilium.identity.web import current_principal

log = logging.getLogger(__name__)

INTERNAL_ERROR = "internal error; see the server log"
NO_STORE = "no-store"


def error_response(error: DomainError) -> JSONResponse:
    """The answer to ``error``: its status, headers and JSON body."""
    headers = {"Cache-Control": NO_STORE, **error.headers}
    return JSONResponse(error.payload(), status_code=error.status, headers=headers)


def exception_handlers(audit: AuditTrail) -> dict[Any, Any]:
    """Starlette's ``exception_handlers``: the domain errors, rendered here only."""

    async def domain_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, DomainError)
        if isinstance(exc, NotFound) and not exc.audited:
            record_not_found(audit, request, exc)
        return error_response(exc)

    return {DomainError: domain_error}


def record_not_found(audit: AuditTrail, request: Request, error: NotFound) -> None:
    """The ``denied`` event of a "not found": what was asked, nothing of what exists. An
    anonymous caller is not recorded here (it was answered 401 before anything was looked
    up; the identity middleware limits what unauthenticated callers can put on record)."""
    principal = current_principal(request)
    if not principal.authenticated:
        return
    audit.submit(web_actor(request, principal), AuditAction.DENIED, AuditOutcome.DENIED,
                 detail={"what": "not found", "method": request.method,
                         "path": request.url.path[:500], "reason": error.message})


class UnexpectedErrors:
    """ASGI middleware inside the application (around the routes and Starlette's exception
    middleware): an exception no handler knows is logged once and answered 500.

    Starlette's own handler for ``Exception`` re-raises after answering, so the server logs
    the same traceback a second time, and in-process clients see the exception instead of the
    answer. Once the answer has started nothing can be said to the client: the exception goes
    on to the server, which logs it and ends the connection (still one log)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def sending(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except Exception:
            if started:
                raise
            log.exception("%s %s failed", scope.get("method", ""), scope.get("path", ""))
            response = JSONResponse({"error": INTERNAL_ERROR}, status_code=500,
                                    headers={"Cache-Control": NO_STORE})
            await response(scope, receive, send)
