"""The schema comes only from Alembic migrations, and they agree with the models."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text

from service.store.db import Store
from service.store.migrate import downgrade, head_revision, upgrade
from service.store.models import Base

TABLES = {"tasks", "samples", "executions", "external_feedback", "triples", "adapters",
          "training_runs", "promotions", "benchmark_runs", "benchmark_results", "loop_state",
          "alembic_version"}


def test_upgrade_creates_every_table_at_head_and_is_idempotent(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path}/a.db")
    store.migrate()
    store.migrate()  # a restart: nothing to do
    assert set(inspect(store.engine).get_table_names()) == TABLES
    with store.engine.connect() as conn:
        assert conn.scalar(text("SELECT version_num FROM alembic_version")) == head_revision()


def test_the_migrations_match_the_models(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path}/b.db")
    store.migrate()
    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}),
                                Base.metadata)
    assert diff == [], f"models and migrations differ; add a revision: {diff}"


def test_downgrade_to_base_removes_everything(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path}/c.db")
    store.migrate()
    downgrade(store.engine, "base")
    assert set(inspect(store.engine).get_table_names()) <= {"alembic_version"}
    upgrade(store.engine)  # and back up again
    assert set(inspect(store.engine).get_table_names()) == TABLES


def test_sqlite_runs_in_wal_mode_with_full_sync(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path}/d/e.db")  # the directory is created
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
