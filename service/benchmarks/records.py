"""Benchmark runs in the store: create, progress, per-task results, finish, read back.

Each task's result is committed as soon as it is scored, so ``GET /v1/benchmarks/{id}`` shows
progress while a run is going, and a crash loses at most the tasks in flight.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update

from service.benchmarks.scoring import TaskScore
from service.store.db import Store
from service.store.models import BenchmarkResultRow, BenchmarkRunRow, utcnow

INTERRUPTED = "interrupted: the service stopped while this run was going"


def create_run(store: Store, **fields: Any) -> BenchmarkRunRow:
    with store.write() as session:
        row = BenchmarkRunRow(status="pending", tasks_done=0, **fields)
        session.add(row)
        session.flush()
        return row


def mark_running(store: Store, run_id: str, tasks_total: int, model: str | None) -> None:
    with store.write() as session:
        run = session.get(BenchmarkRunRow, run_id)
        if run is not None:
            run.status, run.tasks_total, run.model = "running", tasks_total, model


def add_results(store: Store, run_id: str, scores: list[TaskScore]) -> None:
    """Store scored tasks and advance the run's progress, in one transaction."""
    with store.write() as session:
        session.add_all(BenchmarkResultRow(run_id=run_id, task_id=s.task_id, n=s.n,
                                           correct=s.correct, pass_at_k=s.pass_at_k,
                                           samples=s.samples) for s in scores)
        run = session.get(BenchmarkRunRow, run_id)
        if run is not None:
            run.tasks_done += len(scores)


def finish_run(store: Store, run_id: str, pass_at_k: dict[str, float] | None,
               error: str | None = None, adapter: str | None = None) -> None:
    with store.write() as session:
        run = session.get(BenchmarkRunRow, run_id)
        if run is None:
            return
        run.status = "failed" if error else "done"
        run.pass_at_k, run.error, run.finished_at = pass_at_k, error, utcnow()
        if adapter is not None:
            run.adapter = adapter


def fail_unfinished(store: Store) -> int:
    """Runs left pending/running by a previous process can never finish: say so."""
    with store.write() as session:
        result = session.execute(
            update(BenchmarkRunRow).where(BenchmarkRunRow.status.in_(("pending", "running")))
            .values(status="failed", error=INTERRUPTED, finished_at=utcnow()))
        return int(getattr(result, "rowcount", 0) or 0)


def get_run(store: Store, run_id: str) -> tuple[BenchmarkRunRow, list[BenchmarkResultRow]] | None:
    with store.read() as session:
        run = session.get(BenchmarkRunRow, run_id)
        if run is None:
            return None
        results = list(session.scalars(select(BenchmarkResultRow)
                                       .where(BenchmarkResultRow.run_id == run_id)
                                       .order_by(BenchmarkResultRow.id)))
        return run, results


def list_runs(store: Store, benchmark: str | None, adapter: str | None,
              limit: int) -> list[BenchmarkRunRow]:
    """Newest first; the comparison across adapters the dashboard draws."""
    query = select(BenchmarkRunRow).order_by(BenchmarkRunRow.created_at.desc()).limit(limit)
    if benchmark is not None:
        query = query.where(BenchmarkRunRow.benchmark == benchmark)
    if adapter is not None:
        query = query.where(BenchmarkRunRow.adapter == adapter)
    with store.read() as session:
        return list(session.scalars(query))
