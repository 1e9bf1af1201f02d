"""The same store on a real PostgreSQL server: migrations, the API's write and export paths, and
concurrent writers (``LETI_DATABASE_URL=postgresql+psycopg://...``)."""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from service.api.app import create_app
from service.store.db import Store
from service.store.models import Base
from service.store.samples import FeedbackRecord, NewSample, add_feedback, add_samples, \
    sample_history
from tests.api.conftest import make_settings

pytestmark = pytest.mark.postgres
_numbers = itertools.count()


@pytest.fixture
def database(postgres_url: str) -> Iterator[str]:
    """A fresh, empty database on the server for one test."""
    name = f"leti_test_{next(_numbers)}"
    admin = create_engine(make_url(postgres_url).set(database="postgres"),
                          isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS {name}"))
        conn.execute(text(f"CREATE DATABASE {name}"))
    yield make_url(postgres_url).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
    admin.dispose()


def test_migrations_build_the_models_schema_on_postgres(database: str) -> None:
    store = Store(database)
    store.migrate()
    store.migrate()
    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}),
                                Base.metadata)
    assert diff == []
    store.close()


def test_the_api_on_postgres_evaluates_collects_and_exports(database: str, tmp_path: Path,
                                                            mbpp_path: Path) -> None:
    from trainer.data import read_triples

    settings = make_settings(tmp_path, mbpp_path, database_url=database, load_humaneval=False)
    with TestClient(create_app(settings)) as client:
        assert client.get("/readyz").json()["checks"]["store"] == "ok"
        assert len(client.get("/v1/tasks", params={"limit": 1000}).json()["items"]) == 974
        results = client.post("/v1/evaluate", json={
            "task_id": "mbpp/601", "programs": [
                client.get("/v1/tasks/mbpp/601").json()["reference"], "x = 1"]}).json()["results"]
        assert [r["status"] for r in results] == ["passed", "error"]
        held_out = client.post("/v1/evaluate", json={  # the prompt split: never exported
            "task_id": "mbpp/2", "programs": [client.get("/v1/tasks/mbpp/2").json()["reference"]]})
        assert held_out.json()["results"][0]["status"] == "passed"
        feedback = client.post("/v1/feedback", json={
            "sample_id": results[1]["sample_id"], "ratings": {"correctness": {"value": 0,
                                                                            "max": 5}}})
        assert feedback.status_code == 201 and feedback.json()["label"] == "bad"
        export = client.get("/v1/triples/export").text
    path = tmp_path / "t.jsonl"
    path.write_text(export)
    triples = read_triples(path)
    assert [(t.source, t.reward.value) for t in triples] == \
        [("sandbox", "good"), ("sandbox", "bad"), ("external", "bad")]
    assert {json.loads(line)["task_id"] for line in export.splitlines()} == {"mbpp/601"}


def test_the_trainable_backfill_on_postgres(database: str) -> None:
    from tests.store.test_trainable import check_backfill

    check_backfill(database)


def test_concurrent_writers_on_postgres(database: str) -> None:
    store = Store(database)
    store.migrate()
    with store.write() as session:
        session.execute(text("INSERT INTO tasks (id, kind, instruction, tests, setup, created_at)"
                             " VALUES ('user/x', 'user', 'x', '[]', '', now())"))
        sample = add_samples(session, [NewSample("user/x", "x = 1", origin="submitted")])[0]
    errors: list[BaseException] = []

    def write(n: int) -> None:
        try:
            for i in range(20):
                with store.write() as session:
                    add_feedback(session, sample.id, FeedbackRecord(
                        raw={"n": n, "i": i}, label="good", score=1.0, text=f"{n}/{i}"))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with store.read() as session:
        assert len(sample_history(session, sample.id)[1]) == 160
    store.close()
