"""Live consilium sessions: the tables, their coded values, and what leaves the server of them.

A session belongs to one consult case. Its record is the ordered list of its changes
(:class:`SessionChange`, one sequence number per session); the session row carries the
sequencer (``last_seq``), the few columns the sequencer's rules read (status, chair, presenter)
and a snapshot of the folded state, so that a join does not fold the whole record. The protocol
is described in ``docs/live-consilium.md``.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel
from sqlalchemy import BigInteger, Column, Text, UniqueConstraint
from sqlmodel import Field, SQLModel


class SessionStatus(StrEnum):
    SCHEDULED = "scheduled"
    OPEN = "open"
    ENDED = "ended"


class MemberRole(StrEnum):
    CHAIR = "chair"  # started or scheduled it; may invite, hand over control, take it, end
    MEMBER = "member"  # a party of the case, or an invited clinician


class ConsiliumSession(SQLModel, table=True):
    __tablename__ = "consilium_session"

    id: str = Field(primary_key=True, max_length=32,
                    description="random, unguessable: it appears in links")
    case_id: int = Field(foreign_key="consult_case.id", index=True)
    title: str = Field(default="", max_length=200)
    status: str = Field(max_length=16, index=True)
    scheduled_at: datetime = Field(index=True)
    opened_at: datetime | None = None
    ended_at: datetime | None = None
    chair_subject: str = Field(max_length=256)
    chair_name: str = Field(default="", max_length=256)
    chair_institution: str = Field(default="", max_length=64)
    presenter_subject: str = Field(default="", max_length=256)
    last_seq: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, default=0),
                          description="the session's sequencer: the seq of its newest change")
    snapshot: str = Field(default="", sa_column=Column(Text, nullable=False, default=""),
                          description="the folded state at snapshot_seq (JSON)")
    snapshot_seq: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, default=0))
    created_by: str = Field(max_length=256)
    created_at: datetime


class SessionMember(SQLModel, table=True):
    """Someone who may join: the chair, an invited clinician, or a party of the case who joined.
    An invitation is also a grant of the case's studies to the invitee (identity's grants,
    reference ``consilium-<id>``), valid as long as ``expires_at``."""

    __tablename__ = "consilium_member"
    __table_args__ = (UniqueConstraint("session_id", "subject"),)

    id: int | None = Field(default=None, primary_key=True)
    session_id: str = Field(foreign_key="consilium_session.id", max_length=32, index=True)
    subject: str = Field(max_length=256, index=True)
    user_id: int | None = Field(default=None, foreign_key="app_user.id")
    name: str = Field(default="", max_length=256)
    institution: str = Field(default="", max_length=64)
    role: str = Field(max_length=16)
    invited: bool = Field(default=False, description="came by invitation, not as a case party")
    invited_by: str = Field(default="", max_length=256)
    invited_at: datetime | None = None
    expires_at: datetime | None = None
    removed_at: datetime | None = None
    joined_first_at: datetime | None = None
    last_seen_at: datetime | None = None


class SessionChange(SQLModel, table=True):
    """One change of a session, in the order every participant applies it."""

    __tablename__ = "consilium_change"
    __table_args__ = (UniqueConstraint("session_id", "seq"),)

    id: int | None = Field(default=None, primary_key=True)
    session_id: str = Field(foreign_key="consilium_session.id", max_length=32, index=True)
    seq: int = Field(sa_column=Column(BigInteger, nullable=False))
    at: datetime
    actor: str = Field(max_length=256)
    kind: str = Field(max_length=32)
    payload: str = Field(sa_column=Column(Text, nullable=False))
    durable: bool = Field(default=True, description="False: a coalesced view or pointer change")


class SessionConnection(SQLModel, table=True):
    """A participant's open connection, and the web process that holds it: presence that a
    crashed or restarted process leaves behind is found by its process and closed."""

    __tablename__ = "consilium_connection"

    id: int | None = Field(default=None, primary_key=True)
    session_id: str = Field(foreign_key="consilium_session.id", max_length=32, index=True)
    connection_id: str = Field(max_length=32, unique=True)
    subject: str = Field(max_length=256)
    process_id: str = Field(max_length=32, index=True)
    joined_at: datetime


# -- what the HTTP API answers --------------------------------------------------------------------


class PersonPublic(BaseModel):
    subject: str
    name: str
    institution: str


class MemberPublic(PersonPublic):
    role: MemberRole
    invited: bool
    expires_at: datetime | None = None


class SessionPublic(BaseModel):
    id: str
    case_id: int
    title: str
    status: SessionStatus
    scheduled_at: datetime
    opened_at: datetime | None
    ended_at: datetime | None
    chair: PersonPublic
    presenter: str
    last_seq: int
    members: list[MemberPublic]
    url: str
    """The session page of the viewer."""
