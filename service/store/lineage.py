"""Training runs, adapters and promotion decisions: which adapter, data and settings produced
which adapter, and which one serves. For the loop (``service/loop``) to record into.

Promotion keeps one serving adapter at a time: promoting retires the one serving; rolling back
restores the adapter a promotion replaced.
"""

from __future__ import annotations

from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.store.models import AdapterRow, PromotionRow, TrainingRunRow, utcnow

Decision = Literal["promote", "reject", "rollback"]


def start_training_run(session: Session, *, parent_adapter_id: str | None, data_path: str,
                       data_sha256: str, triples_from: int | None, triples_to: int | None,
                       config: dict[str, Any]) -> TrainingRunRow:
    """A run about to train on an exported file (its hash and triple id range name the data)."""
    run = TrainingRunRow(parent_adapter_id=parent_adapter_id, data_path=data_path,
                         data_sha256=data_sha256, triples_from=triples_from,
                         triples_to=triples_to, config=config, status="running")
    session.add(run)
    session.flush()
    return run


def finish_training_run(session: Session, run_id: str, *, adapter: AdapterRow | None,
                        metrics: dict[str, Any] | None, error: str | None = None) -> TrainingRunRow:
    """Close a run: the adapter it produced (``done``), or the error (``failed``)."""
    run = session.get(TrainingRunRow, run_id)
    if run is None:
        raise LookupError(f"no training run {run_id!r}")
    run.status = "failed" if error is not None else "done"
    run.output_adapter_id = adapter.id if adapter is not None else None
    run.metrics, run.error, run.finished_at = metrics, error, utcnow()
    return run


def register_adapter(session: Session, *, name: str, path: str, base_model: str,
                     parent_id: str | None, metrics: dict[str, Any] | None = None) -> AdapterRow:
    """A new candidate adapter (not serving until promoted)."""
    adapter = AdapterRow(id=name, path=path, base_model=base_model, parent_id=parent_id,
                         metrics=metrics, state="candidate")
    session.add(adapter)
    session.flush()
    return adapter


def serving_adapter(session: Session) -> AdapterRow | None:
    return session.scalars(select(AdapterRow).where(AdapterRow.state == "serving")).first()


def decide(session: Session, adapter_id: str, decision: Decision, reason: str,
           metrics: dict[str, Any] | None = None) -> PromotionRow:
    """Record a promotion-gate decision and apply it to the adapters' states."""
    adapter = session.get(AdapterRow, adapter_id)
    if adapter is None:
        raise LookupError(f"no adapter {adapter_id!r}")
    current = serving_adapter(session)
    previous_id = current.id if current is not None and current.id != adapter_id else None
    if decision == "promote":
        if current is not None and current.id != adapter_id:
            current.state = "retired"
        adapter.state = "serving"
    elif decision == "reject":
        adapter.state = "rejected"
    else:  # rollback: ``adapter`` is the one to serve again, replacing whatever serves now
        if current is not None and current.id != adapter_id:
            current.state = "rejected"
        adapter.state = "serving"
    row = PromotionRow(adapter_id=adapter_id, previous_adapter_id=previous_id,
                       decision=decision, reason=reason, metrics=metrics)
    session.add(row)
    session.flush()
    return row


def lineage(session: Session, adapter_id: str) -> list[AdapterRow]:
    """The adapter and its ancestors, newest first (each trained from the next)."""
    chain: list[AdapterRow] = []
    seen: set[str] = set()
    current = session.get(AdapterRow, adapter_id)
    while current is not None and current.id not in seen:
        chain.append(current)
        seen.add(current.id)
        current = session.get(AdapterRow, current.parent_id) if current.parent_id else None
    return chain


def produced_by(session: Session, adapter_id: str) -> TrainingRunRow | None:
    """The training run whose output is this adapter (its data, hash and settings)."""
    query = select(TrainingRunRow).where(TrainingRunRow.output_adapter_id == adapter_id)
    return session.scalars(query).first()
