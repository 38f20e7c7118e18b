"""Users (created just in time from the identity provider's claims), server-side web sessions,
pending logins and access grants."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel
from sqlalchemy import UniqueConstraint
from sqlmodel import Field, SQLModel


class Role(StrEnum):
    REFERRING = "referring"
    CONSULTANT = "consultant"
    HEAD = "head"
    ADMIN = "admin"


CLINICAL_ROLES = frozenset({Role.REFERRING, Role.CONSULTANT, Role.HEAD})


class User(SQLModel, table=True):
    __tablename__ = "app_user"
    __table_args__ = (UniqueConstraint("provider_id", "provider_subject"),)

    id: int | None = Field(default=None, primary_key=True)
    provider_id: str = Field(max_length=64)
    provider_subject: str = Field(max_length=255)
    display_name: str = Field(default="", max_length=256)
    email: str = Field(default="", max_length=256)
    institution_id: str = Field(default="", max_length=64, index=True)
    roles: str = Field(default="", max_length=128, description="space-separated Role values")
    specialty: str = Field(default="", max_length=128)
    created_at: datetime
    last_login_at: datetime


class WebSession(SQLModel, table=True):
    """A browser session. The cookie holds a random token; only its SHA-256 is stored."""

    __tablename__ = "web_session"

    id: int | None = Field(default=None, primary_key=True)
    token_hash: str = Field(max_length=64, unique=True)
    user_id: int = Field(foreign_key="app_user.id", index=True)
    csrf_token: str = Field(max_length=64)
    id_token: str = Field(default="", max_length=8000, description="for RP-initiated logout")
    provider_id: str = Field(max_length=64)
    source: str = Field(default="", max_length=128)
    created_at: datetime
    expires_at: datetime = Field(index=True)


class LoginAttempt(SQLModel, table=True):
    """State of an authorization-code flow between the redirect and the callback."""

    __tablename__ = "login_attempt"

    id: int | None = Field(default=None, primary_key=True)
    state: str = Field(max_length=64, unique=True)
    nonce: str = Field(max_length=64)
    code_verifier: str = Field(max_length=128)
    provider_id: str = Field(max_length=64)
    return_to: str = Field(default="/", max_length=512)
    created_at: datetime = Field(index=True)


class GrantKind(StrEnum):
    CASE = "case"  # a consult case shares its studies with the target institution
    CONSILIUM = "consilium"  # an invitation to a live session
    MANUAL = "manual"  # an admin's decision


class Grant(SQLModel, table=True):
    """Access to one study for an institution (or one user), for as long as it lasts."""

    __tablename__ = "access_grant"

    id: int | None = Field(default=None, primary_key=True)
    study_uid: str = Field(max_length=64, index=True)
    grantee_institution: str = Field(default="", max_length=64, index=True)
    grantee_user_id: int | None = Field(default=None, foreign_key="app_user.id", index=True)
    kind: str = Field(max_length=16)
    reference: str = Field(default="", max_length=128, description="case or session id")
    granted_by: str = Field(max_length=256)
    created_at: datetime
    expires_at: datetime | None = None
    revoked_at: datetime | None = None


class ServiceToken(SQLModel, table=True):
    """An API token Consilium issued to a machine of an institution (only its hash kept)."""

    __tablename__ = "service_token"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=64, description="the system it was issued to")
    institution_id: str = Field(max_length=64, index=True)
    prefix: str = Field(max_length=8, description="shown in lists to recognise the token")
    token_hash: str = Field(max_length=64, unique=True)
    created_by: str = Field(max_length=256)
    created_at: datetime
    expires_at: datetime | None = None
    revoked_at: datetime | None = None
    last_used_at: datetime | None = None


class MePublic(BaseModel):
    """``GET /api/me``: the caller, and the CSRF token their writes carry (browsers)."""

    subject: str
    name: str
    institution: str | None
    institution_name: str
    roles: list[Role]
    specialty: str
    csrf_token: str | None
