"""Reading training triples in the contract's exact shape (docs/ARCHITECTURE.md).

A triple row joins its sample and task; ``triples.id`` orders them and is the cursor, so paging
and exporting are range scans that never skip or repeat a row that was committed before the scan.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from service.store.models import SampleRow, TaskRow, TripleRow

# The contract's fields, in order; export writes exactly these.
CONTRACT_FIELDS = ("sample_id", "task_id", "kind", "instruction", "tests", "entry_point",
                   "program", "status", "feedback", "reward", "score", "source", "adapter",
                   "reference")


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
    after: int | None = None  # cursor: triples with a larger id
    upto: int | None = None  # only triples with an id <= this (a fixed export window)

    def apply(self, query: _Query) -> _Query:
        equal = {TripleRow.source: self.source, TripleRow.reward: self.reward,
                 TaskRow.kind: self.kind, TaskRow.id: self.task_id, TripleRow.status: self.status,
                 SampleRow.adapter: self.adapter, TripleRow.sample_id: self.sample_id}
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


def prompt_tests(task: TaskRow) -> list[str]:
    """The tests a prompt shows: MBPP's and users' asserts; HumanEval's hidden ``check`` is not."""
    return [] if task.kind == "humaneval" else list(task.tests or [])


def contract_record(triple: TripleRow, sample: SampleRow, task: TaskRow) -> dict[str, Any]:
    """One triple as the trainer reads it: exactly ``CONTRACT_FIELDS``."""
    return {
        "sample_id": sample.id, "task_id": task.id, "kind": task.kind,
        "instruction": task.instruction, "tests": prompt_tests(task),
        "entry_point": task.entry_point, "program": sample.program, "status": triple.status,
        "feedback": triple.feedback, "reward": triple.reward, "score": float(triple.score),
        "source": triple.source, "adapter": sample.adapter, "reference": task.reference,
    }


def page(session: Session, where: TripleFilter, limit: int) -> tuple[list[tuple[int, dict]],
                                                                       int | None]:
    """Up to ``limit`` (id, record) pairs, and the cursor for the next page (None at the end)."""
    rows = session.execute(_query(where).limit(limit + 1)).all()
    items = [(t.id, contract_record(t, s, k)) for t, s, k in rows[:limit]]
    return items, (items[-1][0] if len(rows) > limit else None)


def last_id(session: Session) -> int:
    return session.scalar(select(TripleRow.id).order_by(TripleRow.id.desc()).limit(1)) or 0
