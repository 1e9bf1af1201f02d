"""The loop's small rules on a real SQLite store: the round rotation and the pool, the task
source, adapter names and the key-value state, what a window trains on."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.core.config import Settings
from service.loop import state
from service.loop.gate import gate_spec
from service.loop.rounds import next_batch, pool
from service.loop.training import next_adapter_name, prepare_run
from service.loop.training_data import NothingToTrain
from service.store import lineage
from service.store.db import Store


@pytest.fixture
def store(tmp_path: Path) -> Store:
    store = Store(f"sqlite:///{tmp_path / 'leti.db'}")
    store.migrate()
    return store


def _settings(tmp_path: Path, **values: object) -> Settings:
    return Settings(_env_file=None, data_dir=tmp_path, **values)  # type: ignore[call-arg]


def test_the_pool_is_re_sampled_pass_after_pass() -> None:
    ids = [f"mbpp/{i}" for i in range(601, 611)]
    assert pool(ids, 4) == ids[:4] and pool(ids, 0) == ids and pool(ids, 99) == ids
    cursor, seen = 0, []
    for _ in range(4):  # 4 rounds of 2 problems over a pool of 4: each problem twice
        batch, cursor = next_batch(pool(ids, 4), cursor, 2)
        seen += batch
    assert seen == ids[:4] * 2


def test_next_batch_wraps_around() -> None:
    ids = ["a", "b", "c"]
    assert next_batch(ids, 0, 2) == (["a", "b"], 2)
    assert next_batch(ids, 2, 2) == (["c", "a"], 1)
    assert next_batch(ids, 0, 10) == (["a", "b", "c"], 0)
    assert next_batch([], 5, 2) == ([], 5)


def test_first_start_without_mbpp_or_hub_falls_back_in_one_line(
        store: Store, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """No LETI_MBPP_PATH and a hub that cannot be reached: the built-in problems at once, said
    in one warning without a traceback (the hub client's retries took 25-40 s of tracebacks)."""
    import logging
    import socket
    import time

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    for name in ("LETI_MBPP_PATH", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HTTP_PROXY",
                 "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    caplog.set_level(logging.DEBUG)
    began = time.monotonic()
    assert state.ensure_task_source(store, try_hub=True) == "builtin"
    assert time.monotonic() - began < 10
    loud = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(loud) == 1 and loud[0].name == "service.loop.state" and loud[0].exc_info is None
    assert "the loop uses its 30 built-in problems" in loud[0].getMessage()
    assert "is not reachable" in loud[0].getMessage()
    assert len(state.task_ids(store, "train")) == 20


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


def _executed(store: Store, task_id: str, finish_reason: str | None, passed: bool) -> None:
    from service.store.samples import ExecutionRecord, NewSample, add_execution, add_samples

    with store.write() as session:
        sample = add_samples(session, [NewSample(task_id, "x = 1", origin="generated",
                                                 finish_reason=finish_reason)])[0]
        add_execution(session, sample.id, ExecutionRecord(
            status="passed" if passed else "syntax_error", feedback="fb",
            reward="good" if passed else "bad", score=float(passed), tests_passed=0,
            tests_total=3, duration_ms=1.0, outcome={}, backend="local"))


def test_new_triples_of_held_out_problems_do_not_count_or_train(store: Store,
                                                                 tmp_path: Path) -> None:
    state.ensure_task_source(store, try_hub=False)
    validation = state.task_ids(store, "validation")[0]
    _executed(store, validation, "stop", passed=True)
    assert state.counts(store)["new_triples"] == 0
    assert state.counts(store)["held_out_triples"] == 1
    with pytest.raises(NothingToTrain, match=r"held out: 1 mbpp validation split"):
        prepare_run(store, _settings(tmp_path))


@pytest.mark.parametrize(("truncated", "trains"), [("drop", False), ("mark", True),
                                                   ("keep", True)])
def test_a_round_of_only_truncated_failures_trains_by_the_setting(
        store: Store, tmp_path: Path, truncated: str, trains: bool) -> None:
    state.ensure_task_source(store, try_hub=False)
    for task_id in state.task_ids(store, "train")[:3]:
        _executed(store, task_id, "length", passed=False)
    settings = _settings(tmp_path, train_truncated=truncated)
    if not trains:
        with pytest.raises(NothingToTrain, match="cut at the token limit"):
            prepare_run(settings=settings, store=store)
        return
    prepared = prepare_run(store, settings)
    assert prepared.env == {"LETI_TRAIN_TRUNCATED": truncated}
    with store.read() as session:
        report = lineage_run(session, prepared.run_id).config["data"]
    assert (report["exported"], report["truncated_failures"], report["trained_on"]) == (3, 3, 3)
    assert report["marked"] == (3 if truncated == "mark" else 0) and report["dropped"] == {}


def lineage_run(session, run_id: str):  # type: ignore[no-untyped-def]
    from service.store.models import TrainingRunRow

    return session.get(TrainingRunRow, run_id)
