"""consult documents: attachments, the conclusion's PDF, what was written into the archive

Revision ID: 0030
Revises: 0020
Create Date: 2026-11-28 03:50:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0030"
down_revision = "0020"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "consult_conclusion",
        sa.Column(
            "pdf_sha256",
            sqlmodel.sql.sqltypes.AutoString(length=64),
            nullable=False,
            server_default="",
        ),
    )
    op.create_table(
        "consult_attachment",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("filename", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column("media_type", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("uploaded_by", sqlmodel.sql.sqltypes.AutoString(length=256), nullable=False),
        sa.Column(
            "uploaded_by_name", sqlmodel.sql.sqltypes.AutoString(length=256), nullable=False
        ),
        sa.Column(
            "uploaded_by_institution", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False
        ),
        sa.Column("at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["case_id"], ["consult_case.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        op.f("ix_consult_attachment_case_id"), "consult_attachment", ["case_id"], unique=False
    )
    op.create_table(
        "consult_archived_document",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("conclusion_id", sa.Integer(), nullable=False),
        sa.Column("study_uid", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False),
        sa.Column("series_uid", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("sop_instance_uid", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("sop_class_uid", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("reason", sqlmodel.sql.sqltypes.AutoString(length=1000), nullable=False),
        sa.Column("at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["case_id"], ["consult_case.id"]),
        sa.ForeignKeyConstraint(["conclusion_id"], ["consult_conclusion.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("conclusion_id", "study_uid", "kind"),
    )
    op.create_index(
        op.f("ix_consult_archived_document_case_id"),
        "consult_archived_document",
        ["case_id"],
        unique=False,
    )
    op.create_index(
        op.f("ix_consult_archived_document_conclusion_id"),
        "consult_archived_document",
        ["conclusion_id"],
        unique=False,
    )
    op.create_index(
        op.f("ix_consult_archived_document_status"),
        "consult_archived_document",
        ["status"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(
        op.f("ix_consult_archived_document_status"), table_name="consult_archived_document"
    )
    op.drop_index(
        op.f("ix_consult_archived_document_conclusion_id"), table_name="consult_archived_document"
    )
    op.drop_index(
        op.f("ix_consult_archived_document_case_id"), table_name="consult_archived_document"
    )
    op.drop_table("consult_archived_document")
    op.drop_index(op.f("ix_consult_attachment_case_id"), table_name="consult_attachment")
    op.drop_table("consult_attachment")
    with op.batch_alter_table("consult_conclusion") as batch:  # SQLite cannot drop columns in place
        batch.drop_column("pdf_sha256")
