"""The loop's small rules on a real SQLite store: the gate's verdict, the round rotation, the
task source, adapter names and the key-value state."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.core.config import Settings
from service.loop import state
from service.loop.gate import gate_spec, verdict
from service.loop.rounds import next_batch
from service.loop.training import NothingToTrain, next_adapter_name, prepare_run
from service.store import lineage
from service.store.db import Store


@pytest.fixture
def store(tmp_path: Path) -> Store:
    store = Store(f"sqlite:///{tmp_path / 'leti.db'}")
    store.migrate()
    return store


def _settings(tmp_path: Path, **values: object) -> Settings:
    return Settings(_env_file=None, data_dir=tmp_path, **values)  # type: ignore[call-arg]


def test_verdict_promotes_within_the_margin_only() -> None:
    assert verdict(0.30, 0.31, 0.02)[0] is True
    assert verdict(0.40, 0.31, 0.02)[0] is True
    ok, reason = verdict(0.28, 0.31, 0.02)
    assert ok is False and "worse by more than 0.02" in reason


def test_next_batch_wraps_around() -> None:
    ids = ["a", "b", "c"]
    assert next_batch(ids, 0, 2) == (["a", "b"], 2)
    assert next_batch(ids, 2, 2) == (["c", "a"], 1)
    assert next_batch(ids, 0, 10) == (["a", "b", "c"], 0)
    assert next_batch([], 5, 2) == ([], 5)


def test_builtin_source_without_mbpp_and_mbpp_when_loaded(store: Store, tmp_path: Path,
                                                          mbpp_path: Path) -> None:
    assert state.ensure_task_source(store, try_hub=False) == "builtin"
    assert state.task_ids(store, "train")[:2] == ["builtin/1", "builtin/2"]
    assert len(state.task_ids(store, "validation")) == 10
    assert state.ensure_task_source(store, try_hub=False) == "builtin"  # idempotent

    other = Store(f"sqlite:///{tmp_path / 'mbpp.db'}")
    other.migrate()
    from service.core.catalogue import load_catalogue

    load_catalogue(other, _settings(tmp_path, mbpp_path=mbpp_path, load_humaneval=False))
    assert state.ensure_task_source(other, try_hub=False) == "mbpp"
    assert state.task_ids(other, "train")[0] == "mbpp/601"
    spec = gate_spec(state.task_ids(other, "validation"), _settings(tmp_path, gate_problems=5))
    assert spec.problems == tuple(f"mbpp/{i}" for i in range(511, 516))


def test_state_values_and_adapter_names(store: Store) -> None:
    assert state.get_value(store, "round", 0) == 0
    state.set_values(store, round=3, cursor=7)
    state.set_values(store, round=4)
    assert (state.get_value(store, "round"), state.get_value(store, "cursor")) == (4, 7)
    assert next_adapter_name(store, "policy", 0) == "policy-v1"
    with store.write() as session:
        lineage.register_adapter(session, name="policy-v3", path="/x", base_model="m",
                                 parent_id=None)
    assert next_adapter_name(store, "policy", 1) == "policy-v4"
    assert next_adapter_name(store, "policy", 9) == "policy-v10"


def test_nothing_to_train_without_new_triples(store: Store, tmp_path: Path) -> None:
    with pytest.raises(NothingToTrain):
        prepare_run(store, _settings(tmp_path))
