"""Benchmark runs and their per-task results (``benchmark_runs``, ``benchmark_results``): create,
progress, per-task results, finish, read back.

Each call is its own transaction: each task's result is committed as soon as it is scored, so
``GET /v1/benchmarks/{id}`` shows progress while a run is going, and a crash loses at most the
tasks in flight."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

from sqlalchemy import select, update

from service.store.db import Store
from service.store.models import BenchmarkResultRow, BenchmarkRunRow, utcnow


class ScoredTask(Protocol):
    """What one scored task brings to the store (``service.benchmarks.scoring.TaskScore``)."""

    task_id: str
    n: int
    correct: int
    pass_at_k: dict[str, float]
    samples: list[dict[str, Any]]


def create_run(store: Store, **fields: Any) -> BenchmarkRunRow:
    """A new run, ``pending`` with no task done, flushed so its id is known at once."""
    with store.write() as session:
        row = BenchmarkRunRow(status="pending", tasks_done=0, **fields)
        session.add(row)
        session.flush()
        return row


def mark_running(store: Store, run_id: str, tasks_total: int, model: str | None) -> None:
    """The run started sampling: how many tasks it has and which model answers (no-op if gone)."""
    with store.write() as session:
        run = session.get(BenchmarkRunRow, run_id)
        if run is not None:
            run.status, run.tasks_total, run.model = "running", tasks_total, model


def add_results(store: Store, run_id: str, scores: Iterable[ScoredTask]) -> None:
    """Store scored tasks and advance the run's progress by as many, in one transaction."""
    scores = list(scores)
    with store.write() as session:
        session.add_all(BenchmarkResultRow(run_id=run_id, task_id=s.task_id, n=s.n,
                                           correct=s.correct, pass_at_k=s.pass_at_k,
                                           samples=s.samples) for s in scores)
        run = session.get(BenchmarkRunRow, run_id)
        if run is not None:
            run.tasks_done += len(scores)


def finish_run(store: Store, run_id: str, pass_at_k: dict[str, float] | None,
               error: str | None = None, adapter: str | None = None) -> None:
    """Close a run: ``done`` with its scores or ``failed`` with the error (no-op if gone)."""
    with store.write() as session:
        run = session.get(BenchmarkRunRow, run_id)
        if run is None:
            return
        run.status = "failed" if error else "done"
        run.pass_at_k, run.error, run.finished_at = pass_at_k, error, utcnow()
        if adapter is not None:
            run.adapter = adapter


def fail_unfinished(store: Store, error: str) -> int:
    """Mark every pending/running run failed with ``error`` (left by a previous process, they
    can never finish); returns how many."""
    with store.write() as session:
        result = session.execute(
            update(BenchmarkRunRow).where(BenchmarkRunRow.status.in_(("pending", "running")))
            .values(status="failed", error=error, finished_at=utcnow()))
        return int(getattr(result, "rowcount", 0) or 0)


def get_run(store: Store,
            run_id: str) -> tuple[BenchmarkRunRow, list[BenchmarkResultRow]] | None:
    """A run and its per-task results in the order they were stored (None: no such run)."""
    with store.read() as session:
        run = session.get(BenchmarkRunRow, run_id)
        if run is None:
            return None
        return run, list(session.scalars(select(BenchmarkResultRow)
                                         .where(BenchmarkResultRow.run_id == run_id)
                                         .order_by(BenchmarkResultRow.id)))


def list_runs(store: Store, benchmark: str | None, adapter: str | None,
              limit: int) -> list[BenchmarkRunRow]:
    """Newest runs first, optionally of one benchmark and/or adapter (the dashboard compares
    adapters with these)."""
    query = select(BenchmarkRunRow).order_by(BenchmarkRunRow.created_at.desc()).limit(limit)
    if benchmark is not None:
        query = query.where(BenchmarkRunRow.benchmark == benchmark)
    if adapter is not None:
        query = query.where(BenchmarkRunRow.adapter == adapter)
    with store.read() as session:
        return list(session.scalars(query))
