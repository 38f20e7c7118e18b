"""Domain errors, each with the HTTP status it is answered with (rendered in one place).

    DomainError
     ├── InvalidInput    400  the request is malformed or incomplete
     ├── NotAuthenticated 401
     ├── Forbidden       403  the caller may not do this (says nothing about other data)
     ├── NotFound        404  unknown, or not visible to the caller
     ├── Conflict        409  not allowed in the current state, or changed meanwhile
     ├── PayloadTooLarge 413  the body is over a configured limit
     └── UnsupportedMediaType 415  a media type not accepted, or content that is not it
"""

from __future__ import annotations


class DomainError(Exception):
    status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInput(DomainError):
    status = 400


class NotAuthenticated(DomainError):
    status = 401


class Forbidden(DomainError):
    status = 403


class NotFound(DomainError):
    status = 404
    audited = False  # True when whoever raised it has recorded the refusal (the archive gate)


class Conflict(DomainError):
    status = 409


class PayloadTooLarge(DomainError):
    status = 413


class UnsupportedMediaType(DomainError):
    status = 415
