"""Training runs, adapters and promotion decisions: which adapter, data and settings produced
which adapter, and which one serves. For the loop (``service/loop``) to record into and read
back (the run a window was trained to, adapter names, ``GET /v1/adapters``, decision history).

Promotion keeps one serving adapter at a time: promoting retires the one serving; rolling back
restores the adapter a promotion replaced.
"""

from __future__ import annotations

from typing import Any, Literal

from sqlalchemy import func, select
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


# -- training runs ---------------------------------------------------------------------------
def get_training_run(session: Session, run_id: str) -> TrainingRunRow | None:
    """One run by id (None: no such run): its config, progress and outcome."""
    return session.get(TrainingRunRow, run_id)


def unfinished_training_runs(session: Session) -> list[TrainingRunRow]:
    """Runs still ``running`` or ``pending``: at start-up, those the previous process left."""
    return list(session.scalars(select(TrainingRunRow)
                                .where(TrainingRunRow.status.in_(("running", "pending")))))


def last_trained_triple(session: Session) -> int:
    """The newest triple a finished run trained on (0: none): later triples are "new"."""
    upto = session.scalar(select(func.max(TrainingRunRow.triples_to))
                          .where(TrainingRunRow.status == "done"))
    return int(upto or 0)


def count_training_runs(session: Session, status: str | None = None) -> int:
    """How many runs there are (of one status, when given), for the loop's counters."""
    query = select(func.count()).select_from(TrainingRunRow)
    if status is not None:
        query = query.where(TrainingRunRow.status == status)
    return session.scalar(query) or 0


def adapter_runs(session: Session) -> dict[str, str]:
    """Which run produced each adapter: adapter id -> training run id."""
    pairs = session.execute(select(TrainingRunRow.output_adapter_id, TrainingRunRow.id)
                            .where(TrainingRunRow.output_adapter_id.is_not(None))).all()
    return {adapter: run for adapter, run in pairs if adapter is not None}  # (for typing)


# -- adapters --------------------------------------------------------------------------------
def get_adapter(session: Session, adapter_id: str) -> AdapterRow | None:
    """One adapter by name (None: the store never registered it)."""
    return session.get(AdapterRow, adapter_id)


def adapter_ids(session: Session) -> list[str]:
    """Every adapter name ever registered (new names must not collide with any)."""
    return list(session.scalars(select(AdapterRow.id)))


def list_adapters(session: Session) -> list[AdapterRow]:
    """Every adapter, newest first (``GET /v1/adapters``)."""
    return list(session.scalars(select(AdapterRow).order_by(AdapterRow.created_at.desc())))


def count_adapters(session: Session) -> int:
    """How many adapters were registered, for the loop's counters."""
    return session.scalar(select(func.count()).select_from(AdapterRow)) or 0


# -- promotion decisions ---------------------------------------------------------------------
def list_decisions(session: Session, *, newest_first: bool = False,
                   limit: int | None = None) -> list[PromotionRow]:
    """Promotion decisions in time order (or newest first), the first ``limit`` of them."""
    order = PromotionRow.created_at.desc() if newest_first else PromotionRow.created_at
    query = select(PromotionRow).order_by(order)
    if limit is not None:
        query = query.limit(limit)
    return list(session.scalars(query))


def last_serving_decision(session: Session, adapter_id: str | None) -> PromotionRow | None:
    """The newest decision that made ``adapter_id`` serve (promote or rollback): it names the
    adapter it replaced, which a rollback restores."""
    return session.scalars(select(PromotionRow)
                           .where(PromotionRow.adapter_id == adapter_id,
                                  PromotionRow.decision.in_(("promote", "rollback")))
                           .order_by(PromotionRow.created_at.desc())).first()


def rollback_to_base(session: Session, adapter: AdapterRow) -> PromotionRow:
    """Record that ``adapter`` stops serving for the base model: it is rejected, and the
    decision is stored (flushed, so its id and time are known)."""
    adapter.state = "rejected"
    decision = PromotionRow(adapter_id=adapter.id, previous_adapter_id=None,
                            decision="rollback", reason=f"rolled back from {adapter.id} to "
                                                        "the base model")
    session.add(decision)
    session.flush()
    return decision
