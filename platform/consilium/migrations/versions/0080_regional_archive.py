"""the regional archive: scheduled procedures (Modality Worklist), performed procedure steps
(MPPS), the API tokens Consilium issues to machines (service identities) and the remote
studies of consult requests, fetched when a request is submitted

Revision ID: 0080
Revises: 0070
Create Date: 2026-12-05 09:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0080"
down_revision = "0070"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "scheduled_procedure",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("institution_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("accession_number", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("study_uid", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("patient_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("patient_name", sqlmodel.sql.sqltypes.AutoString(length=324), nullable=False),
        sa.Column(
            "patient_name_search", sqlmodel.sql.sqltypes.AutoString(length=324), nullable=False
        ),
        sa.Column("patient_birth_date", sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False),
        sa.Column("patient_sex", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column(
            "requested_procedure_id", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False
        ),
        sa.Column(
            "requested_procedure_description",
            sqlmodel.sql.sqltypes.AutoString(length=64),
            nullable=False,
        ),
        sa.Column(
            "referring_physician", sqlmodel.sql.sqltypes.AutoString(length=324), nullable=False
        ),
        sa.Column("modality", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column(
            "scheduled_station_ae", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False
        ),
        sa.Column(
            "scheduled_station_name", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False
        ),
        sa.Column("scheduled_date", sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False),
        sa.Column("scheduled_time", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("step_id", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("step_description", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column(
            "performing_physician", sqlmodel.sql.sqltypes.AutoString(length=324), nullable=False
        ),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("created_by", sqlmodel.sql.sqltypes.AutoString(length=256), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("updated_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("institution_id", "accession_number"),
        sa.UniqueConstraint("study_uid"),
    )
    op.create_index(
        op.f("ix_scheduled_procedure_institution_id"),
        "scheduled_procedure",
        ["institution_id"],
        unique=False,
    )
    op.create_index(
        op.f("ix_scheduled_procedure_modality"), "scheduled_procedure", ["modality"], unique=False
    )
    op.create_index(
        op.f("ix_scheduled_procedure_patient_id"),
        "scheduled_procedure",
        ["patient_id"],
        unique=False,
    )
    op.create_index(
        op.f("ix_scheduled_procedure_scheduled_date"),
        "scheduled_procedure",
        ["scheduled_date"],
        unique=False,
    )
    op.create_index(
        op.f("ix_scheduled_procedure_scheduled_station_ae"),
        "scheduled_procedure",
        ["scheduled_station_ae"],
        unique=False,
    )
    op.create_index(
        op.f("ix_scheduled_procedure_status"), "scheduled_procedure", ["status"], unique=False
    )
    op.create_table(
        "service_token",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("institution_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("prefix", sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False),
        sa.Column("token_hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("created_by", sqlmodel.sql.sqltypes.AutoString(length=256), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("expires_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column("revoked_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column("last_used_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("token_hash"),
    )
    op.create_index(
        op.f("ix_service_token_institution_id"), "service_token", ["institution_id"], unique=False
    )
    op.create_table(
        "performed_step",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("sop_instance_uid", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("institution_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("station_ae", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("procedure_id", sa.Integer(), nullable=True),
        sa.Column("accession_number", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("study_uid", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("patient_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("patient_name", sqlmodel.sql.sqltypes.AutoString(length=324), nullable=False),
        sa.Column("modality", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("description", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("started", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("ended", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column(
            "discontinuation_reason", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False
        ),
        sa.Column(
            "performed_series", sqlmodel.sql.sqltypes.AutoString(length=16000), nullable=False
        ),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("updated_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["procedure_id"],
            ["scheduled_procedure.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("sop_instance_uid"),
    )
    op.create_index(
        op.f("ix_performed_step_institution_id"), "performed_step", ["institution_id"], unique=False
    )
    op.create_index(
        op.f("ix_performed_step_procedure_id"), "performed_step", ["procedure_id"], unique=False
    )
    op.create_index(
        op.f("ix_performed_step_study_uid"), "performed_step", ["study_uid"], unique=False
    )

    op.create_table(
        "case_remote_study",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("source", sqlmodel.sql.sqltypes.AutoString(length=48), nullable=False),
        sa.Column("study_uid", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("expected", sa.Integer(), nullable=True),
        sa.Column("requested_by", sqlmodel.sql.sqltypes.AutoString(length=256), nullable=False),
        sa.Column(
            "requested_by_name", sqlmodel.sql.sqltypes.AutoString(length=256), nullable=False
        ),
        sa.Column("institution", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("state", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("job_id", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("error", sqlmodel.sql.sqltypes.AutoString(length=512), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("case_id", "study_uid"),
    )
    op.create_index(
        op.f("ix_case_remote_study_case_id"), "case_remote_study", ["case_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_case_remote_study_case_id"), table_name="case_remote_study")
    op.drop_table("case_remote_study")
    op.drop_index(op.f("ix_performed_step_study_uid"), table_name="performed_step")
    op.drop_index(op.f("ix_performed_step_procedure_id"), table_name="performed_step")
    op.drop_index(op.f("ix_performed_step_institution_id"), table_name="performed_step")
    op.drop_table("performed_step")
    op.drop_index(op.f("ix_service_token_institution_id"), table_name="service_token")
    op.drop_table("service_token")
    op.drop_index(op.f("ix_scheduled_procedure_status"), table_name="scheduled_procedure")
    op.drop_index(
        op.f("ix_scheduled_procedure_scheduled_station_ae"), table_name="scheduled_procedure"
    )
    op.drop_index(op.f("ix_scheduled_procedure_scheduled_date"), table_name="scheduled_procedure")
    op.drop_index(op.f("ix_scheduled_procedure_patient_id"), table_name="scheduled_procedure")
    op.drop_index(op.f("ix_scheduled_procedure_modality"), table_name="scheduled_procedure")
    op.drop_index(op.f("ix_scheduled_procedure_institution_id"), table_name="scheduled_procedure")
    op.drop_table("scheduled_procedure")
