"""Benchmark runs in the store: create, progress, per-task results, finish, read back.

Each task's result is committed as soon as it is scored, so ``GET /v1/benchmarks/{id}`` shows
progress while a run is going, and a crash loses at most the tasks in flight.
"""

from __future__ import annotations

from typing import Any

from service.benchmarks.scoring import TaskScore
from service.store import benchmark_runs
from service.store.db import Store
from service.store.models import BenchmarkResultRow, BenchmarkRunRow

INTERRUPTED = "interrupted: the service stopped while this run was going"


def create_run(store: Store, **fields: Any) -> BenchmarkRunRow:
    with store.write() as session:
        return benchmark_runs.create_run(session, **fields)


def mark_running(store: Store, run_id: str, tasks_total: int, model: str | None) -> None:
    with store.write() as session:
        benchmark_runs.mark_running(session, run_id, tasks_total, model)


def add_results(store: Store, run_id: str, scores: list[TaskScore]) -> None:
    """Store scored tasks and advance the run's progress, in one transaction."""
    with store.write() as session:
        benchmark_runs.add_results(session, run_id, scores)


def finish_run(store: Store, run_id: str, pass_at_k: dict[str, float] | None,
               error: str | None = None, adapter: str | None = None) -> None:
    with store.write() as session:
        benchmark_runs.finish_run(session, run_id, pass_at_k, error, adapter)


def fail_unfinished(store: Store) -> int:
    """Runs left pending/running by a previous process can never finish: say so."""
    with store.write() as session:
        return benchmark_runs.fail_unfinished(session, INTERRUPTED)


def get_run(store: Store, run_id: str) -> tuple[BenchmarkRunRow, list[BenchmarkResultRow]] | None:
    with store.read() as session:
        run = benchmark_runs.get_run(session, run_id)
        if run is None:
            return None
        return run, benchmark_runs.run_results(session, run_id)


def list_runs(store: Store, benchmark: str | None, adapter: str | None,
              limit: int) -> list[BenchmarkRunRow]:
    """Newest first; the comparison across adapters the dashboard draws."""
    with store.read() as session:
        return benchmark_runs.list_runs(session, benchmark, adapter, limit)
