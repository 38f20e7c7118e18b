"""instance.dataset_sha256: the hash of the dataset without its file meta

A resend of an instance that differs only in its file meta information (another sender's
Source AE Title, STOW-RS versus C-STORE) is the same instance. Existing rows start empty: the
hash is computed from the stored file the first time such a resend needs it.

Revision ID: 0050
Revises: 0040
Create Date: 2026-12-04 08:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0050"
down_revision = "0040"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("instance") as batch:
        batch.add_column(sa.Column("dataset_sha256", sqlmodel.sql.sqltypes.AutoString(length=64),
                                   nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("instance") as batch:
        batch.drop_column("dataset_sha256")
