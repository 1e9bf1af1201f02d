"""Benchmark runs and their per-task results (``service.store.benchmark_runs``), on a real
SQLite store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from service.benchmarks.scoring import TaskScore as Scored  # what the jobs store
from service.store import benchmark_runs as runs
from service.store.db import Store


@pytest.fixture
def store(tmp_path: Path) -> Store:
    store = Store(f"sqlite:///{tmp_path}/leti.db")
    store.migrate()
    return store


def _create(store: Store, benchmark: str = "humaneval", adapter: str | None = None,
            **extra: Any) -> str:
    return runs.create_run(store, benchmark=benchmark, adapter=adapter, n=2, temperature=0.2,
                           ks=[1], task_limit=None, **extra).id


def _run(store: Store, run_id: str) -> Any:
    found = runs.get_run(store, run_id)
    return None if found is None else found[0]


def test_a_run_from_pending_to_done_with_its_results_in_order(store: Store) -> None:
    run_id = _create(store)
    run = _run(store, run_id)
    assert run is not None and (run.status, run.tasks_done) == ("pending", 0)
    runs.mark_running(store, run_id, 3, "smol")
    runs.add_results(store, run_id, [Scored("HumanEval/1", 2, 1, {"pass@1": 0.5}),
                                     Scored("HumanEval/0", 2, 2, {"pass@1": 1.0})])
    runs.add_results(store, run_id, (s for s in [Scored("HumanEval/2", 2, 0, {"pass@1": 0.0})]))
    found = runs.get_run(store, run_id)
    assert found is not None
    run, results = found
    assert (run.status, run.tasks_total, run.tasks_done, run.model) == ("running", 3, 3, "smol")
    # in the order stored (not by task id)
    assert [r.task_id for r in results] == ["HumanEval/1", "HumanEval/0", "HumanEval/2"]
    runs.finish_run(store, run_id, {"pass@1": 0.5}, adapter="policy-v2")
    run = _run(store, run_id)
    assert run is not None and run.status == "done" and run.finished_at is not None
    assert (run.pass_at_k, run.adapter, run.error) == ({"pass@1": 0.5}, "policy-v2", None)


def test_a_failed_run_keeps_its_adapter_and_missing_runs_are_ignored(store: Store) -> None:
    run_id = _create(store, adapter="policy-v1")
    runs.finish_run(store, run_id, None, error="generator down")
    runs.finish_run(store, "no-such-run", None)  # no error: nothing to close
    runs.mark_running(store, "no-such-run", 1, None)
    run = _run(store, run_id)
    assert run is not None and (run.status, run.error, run.adapter) == \
        ("failed", "generator down", "policy-v1")
    assert runs.get_run(store, "no-such-run") is None


def test_fail_unfinished_closes_only_pending_and_running_runs(store: Store) -> None:
    pending, running, done = _create(store), _create(store), _create(store)
    runs.mark_running(store, running, 1, None)
    runs.finish_run(store, done, {"pass@1": 1.0})
    assert runs.fail_unfinished(store, "interrupted") == 2
    states = {i: _run(store, i) for i in (pending, running, done)}
    assert {i: (r.status, r.error) for i, r in states.items() if r is not None} == {
        pending: ("failed", "interrupted"), running: ("failed", "interrupted"),
        done: ("done", None)}
    assert all(r is not None and r.finished_at is not None for r in states.values())
    assert runs.fail_unfinished(store, "interrupted") == 0


def test_list_runs_newest_first_filtered_and_limited(store: Store) -> None:
    start = datetime(2024, 1, 1, tzinfo=UTC)
    made = [("humaneval", None), ("mbpp", "policy-v1"), ("humaneval", "policy-v1"),
            ("humaneval", "policy-v2")]
    ids = [_create(store, benchmark, adapter, created_at=start + timedelta(minutes=i))
           for i, (benchmark, adapter) in enumerate(made)]
    assert [r.id for r in runs.list_runs(store, None, None, 10)] == ids[::-1]
    assert [r.id for r in runs.list_runs(store, None, None, 2)] == [ids[3], ids[2]]
    assert [r.id for r in runs.list_runs(store, "humaneval", None, 10)] == \
        [ids[3], ids[2], ids[0]]
    assert [r.id for r in runs.list_runs(store, None, "policy-v1", 10)] == [ids[2], ids[1]]
    assert [r.id for r in runs.list_runs(store, "mbpp", "policy-v1", 10)] == [ids[1]]
