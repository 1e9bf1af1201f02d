"""Benchmark runs and their per-task results (``benchmark_runs``, ``benchmark_results``).

Each function takes the caller's session; ``service.benchmarks.records`` decides where each
transaction ends (one per progress step, so progress is readable while a run goes)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from service.store.models import BenchmarkResultRow, BenchmarkRunRow, utcnow


class ScoredTask(Protocol):
    """What one scored task brings to the store (``service.benchmarks.scoring.TaskScore``)."""

    task_id: str
    n: int
    correct: int
    pass_at_k: dict[str, float]
    samples: list[dict[str, Any]]


def create_run(session: Session, **fields: Any) -> BenchmarkRunRow:
    """A new run, ``pending`` with no task done, flushed so its id is known at once."""
    row = BenchmarkRunRow(status="pending", tasks_done=0, **fields)
    session.add(row)
    session.flush()
    return row


def get_run(session: Session, run_id: str) -> BenchmarkRunRow | None:
    """One run by id (None: no such run), for progress updates and reading it back."""
    return session.get(BenchmarkRunRow, run_id)


def mark_running(session: Session, run_id: str, tasks_total: int, model: str | None) -> None:
    """The run started sampling: how many tasks it has and which model answers (no-op if gone)."""
    run = get_run(session, run_id)
    if run is not None:
        run.status, run.tasks_total, run.model = "running", tasks_total, model


def add_results(session: Session, run_id: str, scores: Iterable[ScoredTask]) -> None:
    """Store scored tasks and advance the run's progress by as many (same transaction)."""
    scores = list(scores)
    session.add_all(BenchmarkResultRow(run_id=run_id, task_id=s.task_id, n=s.n,
                                       correct=s.correct, pass_at_k=s.pass_at_k,
                                       samples=s.samples) for s in scores)
    run = get_run(session, run_id)
    if run is not None:
        run.tasks_done += len(scores)


def finish_run(session: Session, run_id: str, pass_at_k: dict[str, float] | None,
               error: str | None = None, adapter: str | None = None) -> None:
    """Close a run: ``done`` with its scores or ``failed`` with the error (no-op if gone)."""
    run = get_run(session, run_id)
    if run is None:
        return
    run.status = "failed" if error else "done"
    run.pass_at_k, run.error, run.finished_at = pass_at_k, error, utcnow()
    if adapter is not None:
        run.adapter = adapter


def fail_unfinished(session: Session, error: str, at: datetime | None = None) -> int:
    """Mark every pending/running run failed with ``error`` (they can never finish after a
    restart); returns how many."""
    result = session.execute(
        update(BenchmarkRunRow).where(BenchmarkRunRow.status.in_(("pending", "running")))
        .values(status="failed", error=error, finished_at=at or utcnow()))
    return int(getattr(result, "rowcount", 0) or 0)


def run_results(session: Session, run_id: str) -> list[BenchmarkResultRow]:
    """A run's per-task results in the order they were stored (the API lists them so)."""
    return list(session.scalars(select(BenchmarkResultRow)
                                .where(BenchmarkResultRow.run_id == run_id)
                                .order_by(BenchmarkResultRow.id)))


def list_runs(session: Session, benchmark: str | None, adapter: str | None,
              limit: int) -> list[BenchmarkRunRow]:
    """Newest runs first, optionally of one benchmark and/or adapter (the dashboard compares
    adapters with these)."""
    query = select(BenchmarkRunRow).order_by(BenchmarkRunRow.created_at.desc()).limit(limit)
    if benchmark is not None:
        query = query.where(BenchmarkRunRow.benchmark == benchmark)
    if adapter is not None:
        query = query.where(BenchmarkRunRow.adapter == adapter)
    return list(session.scalars(query))
