"""Service identities: machines (a hospital's PACS, another archive, a router) that send to
Consilium through DICOMweb act for their institution under an identity of their own, never a
clinician's. Two ways in, both ending in the same kind of :class:`Principal`:

* an **API token issued by Consilium**: an admin of the institution creates it for a named
  system (``POST /api/service-tokens``), sees it once, and can revoke it; only its SHA-256 is
  stored, with a short prefix to recognise it in lists. Tokens look like
  ``csk_<prefix>_<secret>`` so that the middleware tells them from JWTs without a lookup;
* an **OAuth 2.0 client-credentials token** of the institution's identity provider (a Keycloak
  service account): the provider's ``service_clients`` names the client ids whose tokens act
  as systems of the provider's institution (see :func:`service_principal_of_claims`).

A service principal has no role: the access policy's readers are clinicians, so it reads no
patient data; it may store (STOW-RS) into its institution, and every store is audited with the
system as the actor. Creating, revoking and refused tokens are audited too.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Engine
from sqlmodel import Session, col, select

from consilium.audit import Actor, AuditAction, AuditTrail
from consilium.errors import InvalidInput, NotFound
from consilium.identity.models import ServiceToken
from consilium.identity.policy import Principal
from consilium.identity.users import _aware, now
from consilium.settings import OidcProvider

TOKEN_PREFIX = "csk_"
_TOKEN_RE = re.compile(r"^csk_([a-z0-9]{8})_([A-Za-z0-9_-]{32,64})$")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,63}$")
LAST_USED_RESOLUTION = timedelta(minutes=1)  # last_used_at is written at most this often


def is_service_token(token: str) -> bool:
    return token.startswith(TOKEN_PREFIX)


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class ServiceTokenCreate(BaseModel):
    """``POST /api/service-tokens``: a token for a named system of the admin's institution."""

    model_config = ConfigDict(extra="ignore")

    name: str = Field(description="the system, e.g. 'CITY_PACS DICOMweb router'")
    days: int | None = Field(default=None, ge=1, le=3650,
                             description="valid this many days; null: until revoked")


class ServiceTokenPublic(BaseModel):
    """A token as listed (never the secret)."""

    id: int
    name: str
    institution_id: str
    prefix: str
    created_by: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None


class ServiceTokenIssued(ServiceTokenPublic):
    """The answer to creation: the only time the token itself is shown."""

    token: str = Field(description="send as 'Authorization: Bearer <token>'; shown once")


def _public(row: ServiceToken) -> dict[str, Any]:
    return {"id": row.id, "name": row.name, "institution_id": row.institution_id,
            "prefix": row.prefix, "created_by": row.created_by, "created_at": row.created_at,
            "expires_at": row.expires_at, "revoked_at": row.revoked_at,
            "last_used_at": row.last_used_at}


def issue_token(engine: Engine, audit: AuditTrail, actor: Actor, institution_id: str,
                body: ServiceTokenCreate) -> ServiceTokenIssued:
    """A new token for a system of ``institution_id``; audited as a grant to that system."""
    name = body.name.strip()
    if not _NAME_RE.match(name):
        raise InvalidInput("name: 1-64 letters, digits, spaces, '.', '_' or '-'")
    prefix = secrets.token_hex(4)
    token = f"{TOKEN_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
    stamp = now()
    row = ServiceToken(name=name, institution_id=institution_id, prefix=prefix,
                       token_hash=_hash(token), created_by=actor.subject[:256],
                       created_at=stamp,
                       expires_at=stamp + timedelta(days=body.days) if body.days else None)
    with Session(engine, expire_on_commit=False) as session:
        session.add(row)
        session.commit()
        session.refresh(row)
    audit.record(actor, AuditAction.GRANT, detail={
        "what": "service token issued", "system": name, "token": prefix,
        "institution": institution_id, "expires_at": str(row.expires_at or "")})
    return ServiceTokenIssued.model_validate({**_public(row), "token": token})


def tokens_of(engine: Engine, institution_id: str) -> list[ServiceTokenPublic]:
    with Session(engine) as session:
        rows = session.exec(select(ServiceToken).where(
            ServiceToken.institution_id == institution_id).order_by(
            col(ServiceToken.id))).all()
        return [ServiceTokenPublic.model_validate(_public(r)) for r in rows]


def revoke_token(engine: Engine, audit: AuditTrail, actor: Actor, institution_id: str,
                 token_id: int) -> ServiceTokenPublic:
    """Revoke at once (the next request with it is refused); another institution's token is
    :class:`NotFound` like a missing one."""
    with Session(engine, expire_on_commit=False) as session:
        row = session.get(ServiceToken, token_id)
        if row is None or row.institution_id != institution_id:
            raise NotFound("no such service token")
        if row.revoked_at is None:
            row.revoked_at = now()
            session.add(row)
            session.commit()
            session.refresh(row)
    audit.record(actor, AuditAction.REVOKE, detail={
        "what": "service token revoked", "system": row.name, "token": row.prefix,
        "institution": institution_id})
    return ServiceTokenPublic.model_validate(_public(row))


def service_principal(subject: str, institution_id: str, name: str) -> Principal:
    """A machine acting for ``institution_id``: authenticated, no role."""
    return Principal(subject=subject, institution_id=institution_id, roles=frozenset(),
                     display_name=name, authenticated=True, service=name)


def principal_of_token(engine: Engine, token: str) -> Principal | None:
    """The system a Consilium-issued token stands for; None when it is malformed, unknown,
    revoked or expired."""
    if not _TOKEN_RE.match(token):
        return None
    with Session(engine, expire_on_commit=False) as session:
        row = session.exec(select(ServiceToken).where(
            ServiceToken.token_hash == _hash(token))).first()
        if row is None or row.revoked_at is not None:
            return None
        stamp = now()
        if row.expires_at is not None and _aware(row.expires_at) <= stamp:
            return None
        if row.last_used_at is None or _aware(row.last_used_at) < stamp - LAST_USED_RESOLUTION:
            row.last_used_at = stamp
            session.add(row)
            session.commit()
        return service_principal(f"token:{row.prefix}", row.institution_id, row.name)


def client_of_claims(claims: dict[str, Any]) -> str:
    """The OAuth client a client-credentials access token was issued to: ``client_id``
    (RFC 9068), Keycloak's ``azp`` or its older ``clientId``."""
    for key in ("client_id", "azp", "clientId"):
        value = claims.get(key)
        if isinstance(value, str) and value:
            return value
    return ""


def service_principal_of_claims(provider: OidcProvider, claims: dict[str, Any],
                                institution_id: str) -> Principal | None:
    """A machine principal when the token was issued to one of the provider's
    ``service_clients`` (client credentials), else None (a person's token)."""
    client = client_of_claims(claims)
    if not client or client not in provider.service_clients:
        return None
    return service_principal(f"{provider.id}:client:{client}", institution_id,
                             provider.service_clients[client] or client)
