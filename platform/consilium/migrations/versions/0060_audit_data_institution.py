"""audit events name the institution that owns their data

The audit search was scoped by a matching PatientID, and two hospitals can give the same
PatientID to different people: a head then saw the other hospital's events. Each event now
carries the owner of the study it is about; existing events get it from their study. Events
without a study (a patient only) keep it empty and stay visible to the actor's institution.

Revision ID: 0060
Revises: 0050
Create Date: 2026-12-03 08:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0060"
down_revision = "0050"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("audit_event", sa.Column(
        "data_institution", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False,
        server_default=""))
    op.create_index(op.f("ix_audit_event_data_institution"), "audit_event",
                    ["data_institution"], unique=False)
    op.execute(
        "UPDATE audit_event SET data_institution = "
        "(SELECT study.institution_id FROM study WHERE study.study_uid = audit_event.study_uid) "
        "WHERE study_uid <> '' AND EXISTS "
        "(SELECT 1 FROM study WHERE study.study_uid = audit_event.study_uid)")


def downgrade() -> None:
    op.drop_index(op.f("ix_audit_event_data_institution"), table_name="audit_event")
    op.drop_column("audit_event", "data_institution")
