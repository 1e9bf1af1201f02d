"""Reading training triples in the contract's exact shape (docs/ARCHITECTURE.md).

A triple row joins its sample and task; ``triples.id`` orders them and is the cursor, so paging
and exporting are range scans that never skip or repeat a row that was committed before the scan.
Listing shows every triple with its ``trainable`` mark; exports (``service.store.export``) only
ever read trainable ones, and ``window_report`` says what a window held and why some of it was
not exported.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, TypeVar

from sqlalchemy import Select, case, func, select
from sqlalchemy.orm import Session

from service.core.programs import prompt_tests
from service.store.models import ExecutionRow, SampleRow, TaskRow, TripleRow
from service.store.tasks import held_out_reason

# The contract's fields, in order; export writes exactly these.
CONTRACT_FIELDS = ("sample_id", "task_id", "kind", "instruction", "tests", "entry_point",
                   "program", "status", "feedback", "reward", "score", "source", "adapter",
                   "reference", "finish_reason")
# The generator's finish_reason for a program cut at its token limit.
TRUNCATED = "length"


_Query = TypeVar("_Query", bound=Select)


@dataclass(frozen=True)
class TripleFilter:
    """Which triples to read; every field narrows (None: no constraint)."""

    source: str | None = None  # sandbox | external
    reward: str | None = None  # good | bad
    kind: str | None = None  # mbpp | humaneval | user
    task_id: str | None = None
    status: str | None = None
    adapter: str | None = None
    sample_id: str | None = None
    trainable: bool | None = None  # the split-hygiene mark (exports force True)
    after: int | None = None  # cursor: triples with a larger id
    upto: int | None = None  # only triples with an id <= this (a fixed export window)

    def apply(self, query: _Query) -> _Query:
        equal = {TripleRow.source: self.source, TripleRow.reward: self.reward,
                 TaskRow.kind: self.kind, TaskRow.id: self.task_id, TripleRow.status: self.status,
                 SampleRow.adapter: self.adapter, TripleRow.sample_id: self.sample_id,
                 TripleRow.trainable: self.trainable}
        for column, value in equal.items():
            if value is not None:
                query = query.where(column == value)
        if self.after is not None:
            query = query.where(TripleRow.id > self.after)
        if self.upto is not None:
            query = query.where(TripleRow.id <= self.upto)
        # Samples of tasks without an instruction (bare programs) cannot be trained on.
        return query.where(TaskRow.instruction != "")


def _query(where: TripleFilter) -> Select:
    query = (select(TripleRow, SampleRow, TaskRow)
             .join(SampleRow, SampleRow.id == TripleRow.sample_id)
             .join(TaskRow, TaskRow.id == SampleRow.task_id)
             .order_by(TripleRow.id))
    return where.apply(query)


def contract_record(triple: TripleRow, sample: SampleRow, task: TaskRow) -> dict[str, Any]:
    """One triple as the trainer reads it: exactly ``CONTRACT_FIELDS``; its ``tests`` are the
    ones the prompt showed (``programs.prompt_tests``), so training rebuilds that prompt."""
    return {
        "sample_id": sample.id, "task_id": task.id, "kind": task.kind,
        "instruction": task.instruction, "tests": prompt_tests(task),
        "entry_point": task.entry_point, "program": sample.program, "status": triple.status,
        "feedback": triple.feedback, "reward": triple.reward, "score": float(triple.score),
        "source": triple.source, "adapter": sample.adapter, "reference": task.reference,
        "finish_reason": sample.finish_reason,
    }


@dataclass(frozen=True)
class Item:
    """One listed triple: its id (the cursor), its contract record, and its hygiene mark."""

    id: int
    record: dict[str, Any]
    trainable: bool


def page(session: Session, where: TripleFilter, limit: int) -> tuple[list[Item], int | None]:
    """Up to ``limit`` triples, and the cursor for the next page (None at the end)."""
    rows = session.execute(_query(where).limit(limit + 1)).all()
    items = [Item(t.id, contract_record(t, s, k), t.trainable) for t, s, k in rows[:limit]]
    return items, (items[-1].id if len(rows) > limit else None)


def window_report(session: Session, where: TripleFilter) -> dict[str, Any]:
    """What a window of triples holds: how many may be exported for training, how many may not
    and why (``held_out_reason``, the split-hygiene rule), and how many exportable ones are
    failures cut at the token limit (the trainer drops or marks those: LETI_TRAIN_TRUNCATED)."""
    cut = case(((SampleRow.finish_reason == TRUNCATED) & (TripleRow.reward == "bad"), 1),
               else_=0)
    query = (select(TaskRow.kind, TaskRow.split, TripleRow.trainable, func.count(),
                    func.sum(cut))
             .select_from(TripleRow)
             .join(SampleRow, SampleRow.id == TripleRow.sample_id)
             .join(TaskRow, TaskRow.id == SampleRow.task_id)
             .group_by(TaskRow.kind, TaskRow.split, TripleRow.trainable))
    exported = truncated = 0
    not_exported: dict[str, int] = {}
    for kind, split, trainable, count, cut_count in session.execute(
            replace(where, trainable=None).apply(query)):
        if trainable:
            exported, truncated = exported + count, truncated + int(cut_count or 0)
        else:
            why = held_out_reason(kind, split) or "marked when stored"
            not_exported[why] = not_exported.get(why, 0) + count
    return {"exported": exported, "not_exported": dict(sorted(not_exported.items())),
            "truncated_failures": truncated}


def last_id(session: Session) -> int:
    return session.scalar(select(TripleRow.id).order_by(TripleRow.id.desc()).limit(1)) or 0


def count_triples(session: Session, *, after: int | None = None,
                  trainable: bool | None = None) -> int:
    """How many triples there are with an id above ``after`` and this hygiene mark (None: any),
    for the loop's counters (new ones, held-out ones)."""
    query = select(func.count()).select_from(TripleRow)
    if after is not None:
        query = query.where(TripleRow.id > after)
    if trainable is not None:
        query = query.where(TripleRow.trainable.is_(trainable))
    return session.scalar(query) or 0


def with_outcomes(session: Session, where: TripleFilter) -> list[tuple[TripleRow, SampleRow,
                                                                       TaskRow, Any]]:
    """Triples in id order with their sample, task and sandbox outcome (None for external
    feedback), so training-data selection can tell failures apart by error."""
    query = (select(TripleRow, SampleRow, TaskRow, ExecutionRow.outcome)
             .join(SampleRow, SampleRow.id == TripleRow.sample_id)
             .join(TaskRow, TaskRow.id == SampleRow.task_id)
             .outerjoin(ExecutionRow, ExecutionRow.id == TripleRow.execution_id)
             .order_by(TripleRow.id))
    return [(t, s, k, o) for t, s, k, o in session.execute(where.apply(query))]
