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
    with store.write() as session:
        return runs.create_run(session, benchmark=benchmark, adapter=adapter, n=2,
                               temperature=0.2, ks=[1], task_limit=None, **extra).id


def test_a_run_from_pending_to_done_with_its_results_in_order(store: Store) -> None:
    run_id = _create(store)
    with store.read() as session:
        run = runs.get_run(session, run_id)
        assert run is not None and (run.status, run.tasks_done) == ("pending", 0)
    with store.write() as session:
        runs.mark_running(session, run_id, 3, "smol")
    with store.write() as session:
        runs.add_results(session, run_id, [Scored("HumanEval/1", 2, 1, {"pass@1": 0.5}),
                                           Scored("HumanEval/0", 2, 2, {"pass@1": 1.0})])
    with store.write() as session:
        runs.add_results(session, run_id, (s for s in [Scored("HumanEval/2", 2, 0,
                                                              {"pass@1": 0.0})]))
    with store.read() as session:
        run = runs.get_run(session, run_id)
        assert run is not None
        assert (run.status, run.tasks_total, run.tasks_done, run.model) == \
            ("running", 3, 3, "smol")
        # in the order stored (not by task id)
        assert [r.task_id for r in runs.run_results(session, run_id)] == \
            ["HumanEval/1", "HumanEval/0", "HumanEval/2"]
    with store.write() as session:
        runs.finish_run(session, run_id, {"pass@1": 0.5}, adapter="policy-v2")
    with store.read() as session:
        run = runs.get_run(session, run_id)
        assert run is not None and run.status == "done" and run.finished_at is not None
        assert (run.pass_at_k, run.adapter, run.error) == ({"pass@1": 0.5}, "policy-v2", None)


def test_a_failed_run_keeps_its_adapter_and_missing_runs_are_ignored(store: Store) -> None:
    run_id = _create(store, adapter="policy-v1")
    with store.write() as session:
        runs.finish_run(session, run_id, None, error="generator down")
        runs.finish_run(session, "no-such-run", None)  # no error: nothing to close
        runs.mark_running(session, "no-such-run", 1, None)
    with store.read() as session:
        run = runs.get_run(session, run_id)
        assert run is not None and (run.status, run.error, run.adapter) == \
            ("failed", "generator down", "policy-v1")
        assert runs.get_run(session, "no-such-run") is None
        assert runs.run_results(session, "no-such-run") == []


def test_fail_unfinished_closes_only_pending_and_running_runs(store: Store) -> None:
    pending, running, done = _create(store), _create(store), _create(store)
    with store.write() as session:
        runs.mark_running(session, running, 1, None)
        runs.finish_run(session, done, {"pass@1": 1.0})
    with store.write() as session:
        assert runs.fail_unfinished(session, "interrupted") == 2
    with store.read() as session:
        states = {i: runs.get_run(session, i) for i in (pending, running, done)}
    assert {i: (r.status, r.error) for i, r in states.items() if r is not None} == {
        pending: ("failed", "interrupted"), running: ("failed", "interrupted"),
        done: ("done", None)}
    assert all(r is not None and r.finished_at is not None for r in states.values())
    with store.write() as session:
        assert runs.fail_unfinished(session, "interrupted") == 0


def test_list_runs_newest_first_filtered_and_limited(store: Store) -> None:
    start = datetime(2024, 1, 1, tzinfo=UTC)
    made = [("humaneval", None), ("mbpp", "policy-v1"), ("humaneval", "policy-v1"),
            ("humaneval", "policy-v2")]
    ids = [_create(store, benchmark, adapter, created_at=start + timedelta(minutes=i))
           for i, (benchmark, adapter) in enumerate(made)]
    with store.read() as session:
        assert [r.id for r in runs.list_runs(session, None, None, 10)] == ids[::-1]
        assert [r.id for r in runs.list_runs(session, None, None, 2)] == [ids[3], ids[2]]
        assert [r.id for r in runs.list_runs(session, "humaneval", None, 10)] == \
            [ids[3], ids[2], ids[0]]
        assert [r.id for r in runs.list_runs(session, None, "policy-v1", 10)] == \
            [ids[2], ids[1]]
        assert [r.id for r in runs.list_runs(session, "mbpp", "policy-v1", 10)] == [ids[1]]
