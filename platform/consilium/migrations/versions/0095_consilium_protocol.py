"""the consilium's protocol: the decision text with its versions, the participants' signatures
(agreeing or dissenting), and what the closed protocol wrote into the archive

Revision ID: 0095
Revises: 0090
Create Date: 2026-12-06 09:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0095"
down_revision = "0090"
branch_labels = None
depends_on = None

_S = sqlmodel.sql.sqltypes.AutoString
_T = sqlmodel.sql.sqltypes.UTCDateTime


def upgrade() -> None:
    op.create_table(
        "consilium_protocol",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("session_id", _S(length=32), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("status", _S(length=16), nullable=False),
        sa.Column("editor_subject", _S(length=256), nullable=False),
        sa.Column("editor_name", _S(length=256), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("created_at", _T(), nullable=False),
        sa.Column("closed_at", _T(), nullable=True),
        sa.Column("closed_by", _S(length=256), nullable=False),
        sa.Column("content_sha256", _S(length=64), nullable=False),
        sa.Column("pdf_sha256", _S(length=64), nullable=False),
        sa.Column("attachment_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["attachment_id"], ["consult_attachment.id"]),
        sa.ForeignKeyConstraint(["case_id"], ["consult_case.id"]),
        sa.ForeignKeyConstraint(["session_id"], ["consilium_session.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("session_id"),
    )
    op.create_index(op.f("ix_consilium_protocol_case_id"), "consilium_protocol", ["case_id"],
                    unique=False)
    op.create_table(
        "consilium_protocol_version",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("protocol_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("author", _S(length=256), nullable=False),
        sa.Column("author_name", _S(length=256), nullable=False),
        sa.Column("author_institution", _S(length=64), nullable=False),
        sa.Column("at", _T(), nullable=False),
        sa.ForeignKeyConstraint(["protocol_id"], ["consilium_protocol.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("protocol_id", "version"),
    )
    op.create_index(op.f("ix_consilium_protocol_version_protocol_id"),
                    "consilium_protocol_version", ["protocol_id"], unique=False)
    op.create_table(
        "consilium_protocol_signature",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("protocol_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("subject", _S(length=256), nullable=False),
        sa.Column("name", _S(length=256), nullable=False),
        sa.Column("institution", _S(length=64), nullable=False),
        sa.Column("agree", sa.Boolean(), nullable=False),
        sa.Column("dissent", sa.Text(), nullable=False),
        sa.Column("at", _T(), nullable=False),
        sa.Column("voided_at", _T(), nullable=True),
        sa.ForeignKeyConstraint(["protocol_id"], ["consilium_protocol.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_consilium_protocol_signature_protocol_id"),
                    "consilium_protocol_signature", ["protocol_id"], unique=False)
    op.create_table(
        "consilium_protocol_archived",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("protocol_id", sa.Integer(), nullable=False),
        sa.Column("study_uid", _S(length=64), nullable=False),
        sa.Column("kind", _S(length=8), nullable=False),
        sa.Column("series_uid", _S(length=64), nullable=False),
        sa.Column("sop_instance_uid", _S(length=64), nullable=False),
        sa.Column("sop_class_uid", _S(length=64), nullable=False),
        sa.Column("status", _S(length=16), nullable=False),
        sa.Column("reason", _S(length=1000), nullable=False),
        sa.Column("at", _T(), nullable=False),
        sa.ForeignKeyConstraint(["protocol_id"], ["consilium_protocol.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("protocol_id", "study_uid", "kind"),
    )
    op.create_index(op.f("ix_consilium_protocol_archived_protocol_id"),
                    "consilium_protocol_archived", ["protocol_id"], unique=False)
    op.create_index(op.f("ix_consilium_protocol_archived_status"),
                    "consilium_protocol_archived", ["status"], unique=False)


def downgrade() -> None:
    op.drop_table("consilium_protocol_archived")
    op.drop_table("consilium_protocol_signature")
    op.drop_table("consilium_protocol_version")
    op.drop_table("consilium_protocol")
