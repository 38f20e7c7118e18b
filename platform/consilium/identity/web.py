"""How a web request becomes a :class:`Principal` (put there by :mod:`.middleware`)."""

from __future__ import annotations

from starlette.requests import HTTPConnection

from consilium.errors import NotAuthenticated
from consilium.identity.policy import ANONYMOUS, Principal

PRINCIPAL_SCOPE_KEY = "consilium.principal"


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
