"""a case's annotations (measurements, graphic annotations) and key images in tables of their
own; the key images a case kept as backslash-joined SOP UIDs per study move there, with their
series, instance number and frame

Revision ID: 0090
Revises: 0080
Create Date: 2026-12-06 09:00:00.000000
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0090"
down_revision = "0080"
branch_labels = None
depends_on = None

_S = sqlmodel.sql.sqltypes.AutoString


def upgrade() -> None:
    op.create_table(
        "case_mark",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("mark_id", _S(length=64), nullable=False),
        sa.Column("kind", _S(length=16), nullable=False),
        sa.Column("study_uid", _S(length=64), nullable=False),
        sa.Column("series_uid", _S(length=64), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("author_subject", _S(length=256), nullable=False),
        sa.Column("author_name", _S(length=256), nullable=False),
        sa.Column("author_institution", _S(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("deleted", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.Column("session_id", _S(length=32), nullable=True),
        sa.Column("seq", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(["case_id"], ["consult_case.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("case_id", "mark_id"),
    )
    op.create_index(op.f("ix_case_mark_case_id"), "case_mark", ["case_id"], unique=False)
    key_images = op.create_table(
        "case_key_image",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("study_uid", _S(length=64), nullable=False),
        sa.Column("series_uid", _S(length=64), nullable=False),
        sa.Column("sop_instance_uid", _S(length=64), nullable=False),
        sa.Column("sop_class_uid", _S(length=64), nullable=False),
        sa.Column("frame", sa.Integer(), nullable=False),
        sa.Column("instance_number", sa.Integer(), nullable=True),
        sa.Column("series_description", _S(length=64), nullable=False),
        sa.Column("caption", sa.Text(), nullable=False),
        sa.Column("author_subject", _S(length=256), nullable=False),
        sa.Column("author_name", _S(length=256), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["case_id"], ["consult_case.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("case_id", "sop_instance_uid", "frame"),
    )
    op.create_index(op.f("ix_case_key_image_case_id"), "case_key_image", ["case_id"],
                    unique=False)
    assert key_images is not None
    _move_key_images(key_images)
    with op.batch_alter_table("consult_case_study") as batch:
        batch.drop_column("key_images")


def _move_key_images(key_images: sa.Table) -> None:
    """Each SOP UID a case kept becomes a row with what the index knows of it; one the index
    no longer has keeps its study and UID (its series unknown, shown as such)."""
    db = op.get_bind()
    links = db.execute(sa.text(
        "SELECT s.case_id, s.study_uid, s.key_images, c.requester_subject, c.requester_name, "
        "c.created_at FROM consult_case_study s JOIN consult_case c ON c.id = s.case_id "
        "WHERE s.key_images <> '' ORDER BY s.id")).all()
    rows = []
    for case_id, study_uid, joined, subject, name, created in links:
        for sop_uid in dict.fromkeys(u for u in str(joined).split("\\") if u):
            found = db.execute(sa.text(
                "SELECT se.series_uid, i.sop_class_uid, i.instance_number, se.description "
                "FROM instance i JOIN series se ON se.id = i.series_pk "
                "WHERE i.sop_uid = :sop"), {"sop": sop_uid}).first()
            rows.append({
                "case_id": case_id, "study_uid": study_uid,
                "series_uid": str(found[0]) if found else "", "sop_instance_uid": sop_uid,
                "sop_class_uid": str(found[1] or "") if found else "", "frame": 0,
                "instance_number": found[2] if found else None,
                "series_description": str(found[3] or "")[:64] if found else "",
                "caption": "", "author_subject": subject or "", "author_name": name or "",
                "created_at": _when(created)})
    if rows:
        op.bulk_insert(key_images, rows)


def _when(value: object) -> datetime:
    """A time read by raw SQL (SQLite answers text)."""
    if isinstance(value, datetime):
        return value
    if isinstance(value, str) and value:
        return datetime.fromisoformat(value)
    return datetime.now(UTC)


def downgrade() -> None:
    with op.batch_alter_table("consult_case_study") as batch:
        batch.add_column(sa.Column("key_images", _S(length=4000), nullable=False,
                                   server_default=""))
    db = op.get_bind()
    kept = db.execute(sa.text("SELECT case_id, study_uid, sop_instance_uid FROM case_key_image "
                              "ORDER BY id")).all()
    joined: dict[tuple[int, str], list[str]] = {}
    for case_id, study_uid, sop_uid in kept:
        sops = joined.setdefault((int(case_id), str(study_uid)), [])
        if sop_uid not in sops:
            sops.append(str(sop_uid))
    for (case_id, study_uid), sops in joined.items():
        db.execute(sa.text("UPDATE consult_case_study SET key_images = :k "
                           "WHERE case_id = :c AND study_uid = :s"),
                   {"k": "\\".join(sops)[:4000], "c": case_id, "s": study_uid})
    op.drop_index(op.f("ix_case_key_image_case_id"), table_name="case_key_image")
    op.drop_table("case_key_image")
    op.drop_index(op.f("ix_case_mark_case_id"), table_name="case_mark")
    op.drop_table("case_mark")
