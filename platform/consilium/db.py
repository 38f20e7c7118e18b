"""Database engine, sessions and Alembic migrations.

The schema is owned by the migrations in ``consilium/migrations``; nothing calls
``create_all``. SQL stays portable (SQLite for the embedded default, PostgreSQL to scale out).
"""

from __future__ import annotations

from importlib import resources
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, event
from sqlmodel import create_engine


def make_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite gets WAL, a busy timeout and foreign keys."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            # WAL: readers never block the writer. synchronous=FULL: a commit survives power
            # loss, and C-STORE acknowledges only after the commit (measured: no slower here).
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True)


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(resources.files("consilium") / "migrations"))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest migration (idempotent)."""
    cfg = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as connection:
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, "head")


def analyze(engine: Engine) -> None:
    """Refresh the query planner's statistics. Without them SQLite can choose to walk every
    study of an institution for a PatientID lookup (measured: 3.9 ms vs 0.02 ms with 10,000
    studies). ``analysis_limit`` keeps it cheap on big tables (a sample per index)."""
    with engine.begin() as conn:
        if engine.url.get_backend_name() == "sqlite":
            conn.exec_driver_sql("PRAGMA analysis_limit=1000")
        conn.exec_driver_sql("ANALYZE")
