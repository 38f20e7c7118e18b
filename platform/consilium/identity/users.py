"""Plain functions over users, sessions and pending logins (no HTTP here)."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine
from sqlmodel import Session, col, select

from consilium.identity.models import LoginAttempt, Role, User, WebSession
from consilium.identity.policy import Principal
from consilium.settings import OidcProvider, Settings

LOGIN_ATTEMPT_TTL = timedelta(minutes=10)


class LoginRefused(Exception):
    """The provider vouched for the person, but Consilium cannot let them in; says why."""


@dataclass(frozen=True)
class MappedClaims:
    subject: str
    display_name: str
    email: str
    institution_id: str
    roles: frozenset[Role]
    specialty: str


def now() -> datetime:
    return datetime.now(UTC)


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _claim_values(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return value.replace(",", " ").split()
    if isinstance(value, list | tuple):
        return [str(v) for v in value]
    return [str(value)]


def map_claims(settings: Settings, provider: OidcProvider, claims: dict[str, Any]) -> MappedClaims:
    """Translate a provider's claims into a Consilium user, by the provider's mapping."""
    subject = str(claims.get("sub", ""))
    if not subject:
        raise LoginRefused("the token has no subject")
    institution = provider.institution or str(claims.get(provider.institution_claim, "") or "")
    if not institution or settings.institution(institution) is None:
        raise LoginRefused(f"institution {institution!r} is not configured in Consilium")
    roles: set[Role] = set()
    for value in _claim_values(claims.get(provider.roles_claim)):
        mapped = provider.role_map.get(value, value if not provider.role_map else None)
        if mapped in {r.value for r in Role}:
            roles.add(Role(mapped))
    if not roles:
        raise LoginRefused("no Consilium role (referring, consultant, head, admin) in the claims")
    return MappedClaims(
        subject=subject,
        display_name=str(claims.get(provider.name_claim) or claims.get("preferred_username")
                         or subject)[:256],
        email=str(claims.get("email", ""))[:256],
        institution_id=institution,
        roles=frozenset(roles),
        specialty=str(claims.get(provider.specialty_claim, "") or "")[:128],
    )


def upsert_user(engine: Engine, provider_id: str, mapped: MappedClaims) -> User:
    """Just-in-time user record: created at first login, refreshed from the claims each time."""
    with Session(engine, expire_on_commit=False) as session:
        user = session.exec(
            select(User).where(
                User.provider_id == provider_id, User.provider_subject == mapped.subject
            )
        ).first()
        stamp = now()
        if user is None:
            user = User(provider_id=provider_id, provider_subject=mapped.subject,
                        created_at=stamp, last_login_at=stamp)
        user.display_name = mapped.display_name
        user.email = mapped.email
        user.institution_id = mapped.institution_id
        user.roles = " ".join(sorted(r.value for r in mapped.roles))
        user.specialty = mapped.specialty
        user.last_login_at = stamp
        session.add(user)
        session.commit()
        session.refresh(user)
        return user


def roles_of(stored: str) -> frozenset[Role]:
    """The roles of a user row (space-separated values); a value no role has is ignored."""
    return frozenset(Role(value) for value in stored.split() if value in ROLE_VALUES)


ROLE_VALUES = frozenset(r.value for r in Role)


def principal_of(user: User, authenticated: bool = True) -> Principal:
    return Principal(
        subject=f"{user.provider_id}:{user.provider_subject}",
        institution_id=user.institution_id or None,
        roles=roles_of(user.roles),
        display_name=user.display_name,
        authenticated=authenticated,
        user_id=user.id,
        specialty=user.specialty,
    )


def principal_of_claims(provider: OidcProvider, mapped: MappedClaims) -> Principal:
    """An API client's principal straight from a validated access token."""
    return Principal(
        subject=f"{provider.id}:{mapped.subject}",
        institution_id=mapped.institution_id,
        roles=mapped.roles,
        display_name=mapped.display_name,
        authenticated=True,
        specialty=mapped.specialty,
    )


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_session(
    engine: Engine, user: User, provider_id: str, id_token: str, source: str, hours: float
) -> tuple[str, WebSession]:
    """A new session; returns the cookie value (only its hash is stored) and the row."""
    token = secrets.token_urlsafe(32)
    stamp = now()
    row = WebSession(
        token_hash=_hash(token), user_id=user.id or 0, csrf_token=secrets.token_urlsafe(24),
        id_token=id_token[:8000], provider_id=provider_id, source=source[:128],
        created_at=stamp, expires_at=stamp + timedelta(hours=hours),
    )
    with Session(engine, expire_on_commit=False) as session:
        session.add(row)
        session.commit()
        session.refresh(row)
    return token, row


def session_of(engine: Engine, token: str) -> tuple[WebSession, User] | None:
    """The live session and user behind a cookie value (expired ones are deleted)."""
    with Session(engine, expire_on_commit=False) as session:
        row = session.exec(
            select(WebSession, User)
            .join(User, col(User.id) == col(WebSession.user_id))
            .where(WebSession.token_hash == _hash(token))
        ).first()
        if row is None:
            return None
        web_session, user = row
        if _aware(web_session.expires_at) <= now():
            session.delete(web_session)
            session.commit()
            return None
        return web_session, user


def end_session(engine: Engine, token: str) -> WebSession | None:
    with Session(engine, expire_on_commit=False) as session:
        row = session.exec(select(WebSession).where(WebSession.token_hash == _hash(token))).first()
        if row is None:
            return None
        session.delete(row)
        session.commit()
    return row


def start_login(engine: Engine, provider_id: str, return_to: str) -> LoginAttempt:
    attempt = LoginAttempt(
        state=secrets.token_urlsafe(24), nonce=secrets.token_urlsafe(24),
        code_verifier=secrets.token_urlsafe(64)[:96], provider_id=provider_id,
        return_to=return_to, created_at=now(),
    )
    with Session(engine, expire_on_commit=False) as session:
        for stale in session.exec(
            select(LoginAttempt).where(col(LoginAttempt.created_at) < now() - LOGIN_ATTEMPT_TTL)
        ):
            session.delete(stale)
        session.add(attempt)
        session.commit()
        session.refresh(attempt)
    return attempt


def consume_login(engine: Engine, provider_id: str, state: str) -> LoginAttempt | None:
    """The pending login for ``state``, used once; None if unknown, expired or another
    provider's (a replayed or forged callback)."""
    with Session(engine, expire_on_commit=False) as session:
        attempt = session.exec(select(LoginAttempt).where(LoginAttempt.state == state)).first()
        if attempt is None:
            return None
        session.delete(attempt)
        session.commit()
    if attempt.provider_id != provider_id:
        return None
    if _aware(attempt.created_at) < now() - LOGIN_ATTEMPT_TTL:
        return None
    return attempt
