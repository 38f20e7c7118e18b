"""The Alembic migrations build exactly the schema the models describe (tables, columns, types,
nullability, indexes, unique constraints): a model changed without a migration fails here."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlmodel import SQLModel

import consilium.archive.models
import consilium.archive.prefetch
import consilium.archive.worklist_models
import consilium.audit
import consilium.consult.annotation_models
import consilium.consult.models
import consilium.identity.models
import consilium.live.models
import consilium.live.protocol_models  # noqa: F401  (the models register their tables)
from consilium.db import make_engine, migrate


def test_migrated_schema_matches_the_models(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'schema.db'}")
    migrate(engine)
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        differences: list[Any] = compare_metadata(context, SQLModel.metadata)
    assert differences == []
