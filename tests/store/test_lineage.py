"""Adapters, the runs that produced them, and promotion decisions, on a real SQLite store."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.store.db import Store
from service.store.lineage import (decide, finish_training_run, lineage, produced_by,
                                   register_adapter, serving_adapter, start_training_run)


@pytest.fixture
def store(tmp_path: Path) -> Store:
    store = Store(f"sqlite:///{tmp_path}/leti.db")
    store.migrate()
    return store


def _train(store: Store, parent: str | None, name: str) -> str:
    with store.write() as session:
        run = start_training_run(session, parent_adapter_id=parent, data_path="t.jsonl",
                                 data_sha256="ab" * 32, triples_from=0, triples_to=10,
                                 config={"rank": 8})
        adapter = register_adapter(session, name=name, path=f"/a/{name}", base_model="smol",
                                   parent_id=parent)
        finish_training_run(session, run.id, adapter=adapter, metrics={"loss": 1.0})
    return run.id


def test_lineage_runs_and_promotions(store: Store) -> None:
    first_run = _train(store, None, "policy-v1")
    _train(store, "policy-v1", "policy-v2")
    with store.write() as session:
        decide(session, "policy-v1", "promote", "first adapter")
        promotion = decide(session, "policy-v2", "promote", "pass@1 +3 points", {"pass@1": 0.3})
        assert promotion.previous_adapter_id == "policy-v1"
    with store.read() as session:
        assert serving_adapter(session).id == "policy-v2"  # type: ignore[union-attr]
        assert [a.id for a in lineage(session, "policy-v2")] == ["policy-v2", "policy-v1"]
        run = produced_by(session, "policy-v1")
        assert run is not None and run.id == first_run and run.status == "done"
        assert run.data_sha256 == "ab" * 32 and run.config == {"rank": 8}
    with store.write() as session:
        decide(session, "policy-v1", "rollback", "regression in production")
    with store.read() as session:
        assert serving_adapter(session).id == "policy-v1"  # type: ignore[union-attr]
        assert lineage(session, "policy-v2")[0].state == "rejected"


def test_a_failed_run_and_a_rejected_candidate(store: Store) -> None:
    with store.write() as session:
        run = start_training_run(session, parent_adapter_id=None, data_path="t.jsonl",
                                 data_sha256="0" * 64, triples_from=None, triples_to=None,
                                 config={})
        finish_training_run(session, run.id, adapter=None, metrics=None, error="out of memory")
        register_adapter(session, name="policy-v9", path="/a", base_model="smol", parent_id=None)
        decide(session, "policy-v9", "reject", "pass@1 fell")
    with store.read() as session:
        assert serving_adapter(session) is None
        assert lineage(session, "policy-v9")[0].state == "rejected"
    with pytest.raises(LookupError), store.write() as session:
        decide(session, "nope", "promote", "")
