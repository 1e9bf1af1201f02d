"""What the loop keeps in the store: its key-value state, its task source, and what
``GET /v1/loop`` and ``GET /v1/adapters`` answer, read through ``service.store`` (each function
here opens one transaction). Everything here is synchronous (run it in a thread).
"""

from __future__ import annotations

import logging
from typing import Any

from sandbox.tasks import Task, TaskDataError, load_mbpp
from service.loop.builtin_tasks import builtin_split, builtin_tasks
from service.store import lineage, loop_state
from service.store.db import Store
from service.store.models import AdapterRow, PromotionRow
from service.store.samples import count_samples
from service.store.tasks import add_tasks, split_task_ids, sync_catalogue, task_ids_like, task_row
from service.store.triples import count_triples

log = logging.getLogger(__name__)


def get_value(store: Store, key: str, default: Any = None) -> Any:
    with store.read() as session:
        return loop_state.get_value(session, key, default)


def set_values(store: Store, **values: Any) -> None:
    """Write several keys in one transaction (a round's counters move together)."""
    with store.write() as session:
        for key, value in values.items():
            loop_state.set_value(session, key, value)


def task_ids(store: Store, split: str) -> list[str]:
    """MBPP-style task ids of a split, MBPP's own first, ordered (a stable rotation)."""
    with store.read() as session:
        ids = split_task_ids(session, "mbpp", split)
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
        have = task_ids_like(session, "builtin/%")
        rows = []
        for task in builtin_tasks():
            if task.task_id not in have:
                row = task_row(task)
                row.split = builtin_split(task)
                rows.append(row)
        add_tasks(session, rows)
    return "builtin"


def counts(store: Store) -> dict[str, int]:
    with store.read() as session:
        trained = lineage.last_trained_triple(session)
        return {
            "samples": count_samples(session),
            "triples": count_triples(session),
            # only what may be trained on counts towards the next run (split hygiene)
            "new_triples": count_triples(session, after=trained, trainable=True),
            "held_out_triples": count_triples(session, trainable=False),
            "training_runs": lineage.count_training_runs(session),
            "failed_runs": lineage.count_training_runs(session, status="failed"),
            "adapters": lineage.count_adapters(session),
        }


def decision_json(row: PromotionRow) -> dict[str, Any]:
    return {"id": row.id, "adapter": row.adapter_id, "previous": row.previous_adapter_id,
            "decision": row.decision, "reason": row.reason, "metrics": row.metrics,
            "created_at": row.created_at.isoformat()}


def decisions(store: Store, limit: int = 10) -> list[dict[str, Any]]:
    """The newest promotion decisions first, with their numbers."""
    with store.read() as session:
        rows = lineage.list_decisions(session, newest_first=True, limit=limit)
        return [decision_json(r) for r in rows]


def pass_history(store: Store) -> list[dict[str, Any]]:
    """Every gate evaluation in time order: the serving adapter's and the candidate's pass@1."""
    with store.read() as session:
        rows = lineage.list_decisions(session)
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
        runs = lineage.adapter_runs(session)
        rows = lineage.list_adapters(session)
        return [adapter_json(r, runs.get(r.id), r.id in loaded) for r in rows]
