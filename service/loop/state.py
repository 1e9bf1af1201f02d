"""What the loop keeps in the store: its key-value state, its task source, and the queries behind
``GET /v1/loop`` and ``GET /v1/adapters``. Everything here is synchronous (run it in a thread).
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from sandbox.tasks import Task, TaskDataError, load_mbpp
from service.loop.builtin_tasks import builtin_split, builtin_tasks
from service.store.db import Store
from service.store.models import (
    AdapterRow,
    LoopStateRow,
    PromotionRow,
    SampleRow,
    TaskRow,
    TrainingRunRow,
    TripleRow,
)
from service.store.tasks import sync_catalogue, task_row

log = logging.getLogger(__name__)


def get_value(store: Store, key: str, default: Any = None) -> Any:
    with store.read() as session:
        row = session.get(LoopStateRow, key)
        return default if row is None else row.value


def set_values(store: Store, **values: Any) -> None:
    """Write several keys in one transaction (a round's counters move together)."""
    with store.write() as session:
        for key, value in values.items():
            row = session.get(LoopStateRow, key)
            if row is None:
                session.add(LoopStateRow(key=key, value=value))
            else:
                row.value = value


def task_ids(store: Store, split: str) -> list[str]:
    """MBPP-style task ids of a split, MBPP's own first, ordered (a stable rotation)."""
    with store.read() as session:
        ids = list(session.scalars(select(TaskRow.id).where(TaskRow.kind == "mbpp",
                                                            TaskRow.split == split)))
    mbpp = sorted((i for i in ids if i.startswith("mbpp/")), key=lambda i: int(i.split("/")[1]))
    if mbpp:
        return mbpp
    return sorted(ids, key=lambda i: int(i.rsplit("/", 1)[1]))


def ensure_task_source(store: Store, try_hub: bool) -> str:
    """Make sure training and validation problems exist: MBPP (already loaded from
    ``LETI_MBPP_PATH``, or fetched from the hub), else the built-in set. Returns which."""
    if task_ids(store, "train") and task_ids(store, "validation"):
        return "mbpp" if task_ids(store, "train")[0].startswith("mbpp/") else "builtin"
    if try_hub:
        try:
            tasks: list[Task] = load_mbpp()
            with store.write() as session:
                sync_catalogue(session, tasks)
            return "mbpp"
        except TaskDataError as exc:  # one line, no traceback: this is an expected start
            log.warning("the loop uses its %d built-in problems: %s (LETI_LOOP_MBPP_HUB=false "
                        "skips the hub)", len(builtin_tasks()), exc)
    with store.write() as session:
        have = set(session.scalars(select(TaskRow.id).where(TaskRow.id.like("builtin/%"))))
        for task in builtin_tasks():
            if task.task_id not in have:
                row = task_row(task)
                row.split = builtin_split(task)
                session.add(row)
    return "builtin"


def last_trained_triple(session: Session) -> int:
    """The newest triple a finished run trained on (0: none): later triples are "new"."""
    upto = session.scalar(select(func.max(TrainingRunRow.triples_to))
                          .where(TrainingRunRow.status == "done"))
    return int(upto or 0)


def counts(store: Store) -> dict[str, int]:
    with store.read() as session:
        trained = last_trained_triple(session)
        return {
            "samples": session.scalar(select(func.count()).select_from(SampleRow)) or 0,
            "triples": session.scalar(select(func.count()).select_from(TripleRow)) or 0,
            # only what may be trained on counts towards the next run (split hygiene)
            "new_triples": session.scalar(select(func.count()).select_from(TripleRow)
                                          .where(TripleRow.id > trained,
                                                 TripleRow.trainable.is_(True))) or 0,
            "held_out_triples": session.scalar(select(func.count()).select_from(TripleRow)
                                               .where(TripleRow.trainable.is_(False))) or 0,
            "training_runs": session.scalar(select(func.count())
                                            .select_from(TrainingRunRow)) or 0,
            "failed_runs": session.scalar(select(func.count()).select_from(TrainingRunRow)
                                          .where(TrainingRunRow.status == "failed")) or 0,
            "adapters": session.scalar(select(func.count()).select_from(AdapterRow)) or 0,
        }


def decision_json(row: PromotionRow) -> dict[str, Any]:
    return {"id": row.id, "adapter": row.adapter_id, "previous": row.previous_adapter_id,
            "decision": row.decision, "reason": row.reason, "metrics": row.metrics,
            "created_at": row.created_at.isoformat()}


def decisions(store: Store, limit: int = 10) -> list[dict[str, Any]]:
    """The newest promotion decisions first, with their numbers."""
    with store.read() as session:
        rows = session.scalars(select(PromotionRow)
                               .order_by(PromotionRow.created_at.desc()).limit(limit))
        return [decision_json(r) for r in rows]


def pass_history(store: Store) -> list[dict[str, Any]]:
    """Every gate evaluation in time order: the serving adapter's and the candidate's pass@1."""
    with store.read() as session:
        rows = session.scalars(select(PromotionRow).order_by(PromotionRow.created_at))
        history = []
        for row in rows:
            metrics = row.metrics or {}
            if "candidate_pass_at_1" in metrics:
                history.append({"adapter": row.adapter_id, "decision": row.decision,
                                "pass_at_1": metrics["candidate_pass_at_1"],
                                "serving_pass_at_1": metrics.get("serving_pass_at_1"),
                                "at": row.created_at.isoformat()})
        return history


def adapter_json(row: AdapterRow, run_id: str | None, loaded: bool) -> dict[str, Any]:
    return {"name": row.id, "state": row.state, "path": row.path, "base_model": row.base_model,
            "parent": row.parent_id, "metrics": row.metrics, "training_run": run_id,
            "loaded": loaded, "created_at": row.created_at.isoformat()}


def adapters(store: Store, loaded: set[str]) -> list[dict[str, Any]]:
    """Every adapter the loop made, newest first, with the run that produced it."""
    with store.read() as session:
        pairs = session.execute(select(TrainingRunRow.output_adapter_id, TrainingRunRow.id)
                                .where(TrainingRunRow.output_adapter_id.is_not(None))).all()
        runs = {adapter: run for adapter, run in pairs}
        rows = session.scalars(select(AdapterRow).order_by(AdapterRow.created_at.desc()))
        return [adapter_json(r, runs.get(r.id), r.id in loaded) for r in rows]
