"""live consilium sessions: sessions, members, their ordered changes, open connections

A session's changes are its record (one sequence number per session, kept in the session row
and advanced in the transaction that inserts the change); the members are who may join; the
connections are presence, with the web process holding each, so that a process that died
leaves nobody "online" for long.

Revision ID: 0070
Revises: 0060
Create Date: 2026-12-04 09:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0070"
down_revision = "0060"
branch_labels = None
depends_on = None

_S = sqlmodel.sql.sqltypes.AutoString
_T = sqlmodel.sql.sqltypes.UTCDateTime


def upgrade() -> None:
    op.create_table(
        "consilium_session",
        sa.Column("id", _S(length=32), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("title", _S(length=200), nullable=False),
        sa.Column("status", _S(length=16), nullable=False),
        sa.Column("scheduled_at", _T(), nullable=False),
        sa.Column("opened_at", _T(), nullable=True),
        sa.Column("ended_at", _T(), nullable=True),
        sa.Column("chair_subject", _S(length=256), nullable=False),
        sa.Column("chair_name", _S(length=256), nullable=False),
        sa.Column("chair_institution", _S(length=64), nullable=False),
        sa.Column("presenter_subject", _S(length=256), nullable=False),
        sa.Column("last_seq", sa.BigInteger(), nullable=False),
        sa.Column("snapshot", sa.Text(), nullable=False),
        sa.Column("snapshot_seq", sa.BigInteger(), nullable=False),
        sa.Column("created_by", _S(length=256), nullable=False),
        sa.Column("created_at", _T(), nullable=False),
        sa.ForeignKeyConstraint(["case_id"], ["consult_case.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_consilium_session_case_id"), "consilium_session", ["case_id"],
                    unique=False)
    op.create_index(op.f("ix_consilium_session_scheduled_at"), "consilium_session",
                    ["scheduled_at"], unique=False)
    op.create_index(op.f("ix_consilium_session_status"), "consilium_session", ["status"],
                    unique=False)
    op.create_table(
        "consilium_change",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("session_id", _S(length=32), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("at", _T(), nullable=False),
        sa.Column("actor", _S(length=256), nullable=False),
        sa.Column("kind", _S(length=32), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("durable", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(["session_id"], ["consilium_session.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("session_id", "seq"),
    )
    op.create_index(op.f("ix_consilium_change_session_id"), "consilium_change", ["session_id"],
                    unique=False)
    op.create_table(
        "consilium_connection",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("session_id", _S(length=32), nullable=False),
        sa.Column("connection_id", _S(length=32), nullable=False),
        sa.Column("subject", _S(length=256), nullable=False),
        sa.Column("process_id", _S(length=32), nullable=False),
        sa.Column("joined_at", _T(), nullable=False),
        sa.ForeignKeyConstraint(["session_id"], ["consilium_session.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("connection_id"),
    )
    op.create_index(op.f("ix_consilium_connection_process_id"), "consilium_connection",
                    ["process_id"], unique=False)
    op.create_index(op.f("ix_consilium_connection_session_id"), "consilium_connection",
                    ["session_id"], unique=False)
    op.create_table(
        "consilium_member",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("session_id", _S(length=32), nullable=False),
        sa.Column("subject", _S(length=256), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("name", _S(length=256), nullable=False),
        sa.Column("institution", _S(length=64), nullable=False),
        sa.Column("role", _S(length=16), nullable=False),
        sa.Column("invited", sa.Boolean(), nullable=False),
        sa.Column("invited_by", _S(length=256), nullable=False),
        sa.Column("invited_at", _T(), nullable=True),
        sa.Column("expires_at", _T(), nullable=True),
        sa.Column("removed_at", _T(), nullable=True),
        sa.Column("joined_first_at", _T(), nullable=True),
        sa.Column("last_seen_at", _T(), nullable=True),
        sa.ForeignKeyConstraint(["session_id"], ["consilium_session.id"]),
        sa.ForeignKeyConstraint(["user_id"], ["app_user.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("session_id", "subject"),
    )
    op.create_index(op.f("ix_consilium_member_session_id"), "consilium_member", ["session_id"],
                    unique=False)
    op.create_index(op.f("ix_consilium_member_subject"), "consilium_member", ["subject"],
                    unique=False)


def downgrade() -> None:
    op.drop_table("consilium_member")
    op.drop_table("consilium_connection")
    op.drop_table("consilium_change")
    op.drop_table("consilium_session")
