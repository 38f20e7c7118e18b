"""Domain errors, each with the HTTP status it is answered with.

Domain functions and adapters raise these; nobody renders them but the web edge
(:mod:`consilium.edge`, one Starlette exception handler for the whole tree), which answers
``{"error": message}`` (and ``"reason": code`` where the error names one) with the class's
status and headers. DICOMweb answers the same classes with the same statuses; Socket.IO
handlers put the same status and message into their acknowledgements.

    DomainError               400
     ├── InvalidInput         400  the request is malformed or incomplete
     ├── NotAuthenticated     401  no caller (WWW-Authenticate: Bearer)
     ├── Forbidden            403  the caller may not do this (says nothing about other data)
     ├── NotFound             404  unknown, or not visible to the caller
     ├── NotAcceptable        406  no representation the client accepts
     ├── Conflict             409  not allowed in the current state, or changed meanwhile
     ├── PayloadTooLarge      413  the body is over a configured limit
     ├── UnsupportedMediaType 415  a media type not accepted, or content that is not it
     ├── Unprocessable        422  well formed, but it makes no sense for this data
     ├── BadGateway           502  a peer (a hospital's PACS) failed
     └── Unavailable          503  busy or restarting: try again (Retry-After)

A subclass may carry its status per instance (the render service's failures come with the
worker's status): the edge answers ``error.status`` whatever the class.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

_NO_HEADERS: Mapping[str, str] = MappingProxyType({})


class DomainError(Exception):
    status = 400
    headers: Mapping[str, str] = _NO_HEADERS  # sent with the answer

    def __init__(self, message: str, *, reason: str = "",
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason  # a short code for clients (the render service's), or ""
        if headers:
            self.headers = {**type(self).headers, **headers}

    def payload(self) -> dict[str, str]:
        """The JSON body of the answer."""
        body = {"error": self.message}
        if self.reason:
            body["reason"] = self.reason
        return body


class InvalidInput(DomainError):
    status = 400


class NotAuthenticated(DomainError):
    status = 401
    headers = MappingProxyType({"WWW-Authenticate": "Bearer"})  # RFC 7235: a 401 names one


class Forbidden(DomainError):
    status = 403


class NotFound(DomainError):
    status = 404
    audited = False  # True when whoever raised it has put the request on record

    def __init__(self, message: str, *, audited: bool = False, reason: str = "",
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message, reason=reason, headers=headers)
        if audited:
            self.audited = True


class NotAcceptable(DomainError):
    status = 406


class Conflict(DomainError):
    status = 409


class PayloadTooLarge(DomainError):
    status = 413


class UnsupportedMediaType(DomainError):
    status = 415


class Unprocessable(DomainError):
    status = 422


class BadGateway(DomainError):
    status = 502


class Unavailable(DomainError):
    status = 503
    headers = MappingProxyType({"Retry-After": "1"})
