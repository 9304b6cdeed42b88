"""Alembic migrations are the only way the schema is made: prove they match the models."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import select

from mailgate.config import DatabaseSettings
from mailgate.store.db import make_engine
from mailgate.store.models import Base, Counter


def test_models_and_migrations_agree(db_url: str) -> None:
    engine = make_engine(DatabaseSettings(url=db_url))
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            diff = compare_metadata(context, Base.metadata)
            assert diff == []
            counter = conn.execute(select(Counter.value).where(Counter.name == "ticket"))
            assert counter.scalar_one() == 0
    finally:
        engine.dispose()


def test_sqlite_runs_durable_settings(tmp_path: object) -> None:
    engine = make_engine(DatabaseSettings(url=f"sqlite:///{tmp_path}/x.db", busy_timeout_ms=1234))
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            # 2 = FULL: the WAL is fsynced at every commit, before we answer 250.
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 1234
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    finally:
        engine.dispose()
