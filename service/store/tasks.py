"""Task rows: the MBPP/HumanEval catalogue (loaded at start-up) and users' own tasks, and the
one rule of split hygiene: which tasks' programs may ever be trained on (``training_exclusion``).

Store ids follow the triples contract: ``mbpp/601``, ``humaneval/HumanEval/0`` and
``user/<uuid>``, where a user task's uuid is derived from its content, so posting the same
instruction and tests twice names the same task.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Sequence

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from sandbox.tasks import MBPP_SPLITS, Task
from service.store.models import TaskRow

_USER_NAMESPACE = uuid.UUID("6f1b3c1e-6d0e-4c1e-9a55-1e7171001e71")


def store_task_id(task: Task) -> str:
    """The contract's id for a benchmark task (HumanEval ids get a ``humaneval/`` prefix)."""
    return task.task_id if task.kind == "mbpp" else f"humaneval/{task.task_id}"


def _mbpp_split(number: int) -> str | None:
    return next((name for name, ids in MBPP_SPLITS.items() if number in ids), None)


# The only splits whose programs feed training (MBPP's train split; the built-in problems use the
# same names). Everything the gate or a benchmark measures on must stay out of training data.
TRAINABLE_SPLITS = frozenset({"train"})


def training_exclusion(kind: str, split: str | None, instruction: str | None) -> str | None:
    """Why a task's programs must never be trained on, or None when they may be.

    The one rule of split hygiene (docs/LOOP.md "Split hygiene"): users' tasks and MBPP-style
    train-split tasks feed training; MBPP's validation split (the promotion gate), its test
    split and HumanEval (the benchmarks), its prompt split and any task of an unknown split are
    held out, whatever the API was asked, so a figure measured on them stays a figure on
    problems never trained on. A task without an instruction has no prompt to train with.
    Every triple is marked with this verdict when it is stored (``triples.trainable``), and
    exports only ever contain triples it allows."""
    if not instruction:
        return "no instruction"
    return held_out_reason(kind, split)


def held_out_reason(kind: str, split: str | None) -> str | None:
    """The split part of ``training_exclusion``: why this kind and split are held out."""
    if kind == "user":
        return None
    if kind == "mbpp":
        return None if split in TRAINABLE_SPLITS else f"mbpp {split or 'unknown'} split"
    return f"{kind} (held out)"


def may_train_on(task: TaskRow) -> bool:
    """Whether ``task``'s programs may enter training data (``training_exclusion``)."""
    return training_exclusion(task.kind, task.split, task.instruction) is None


def task_row(task: Task) -> TaskRow:
    return TaskRow(id=store_task_id(task), kind=task.kind, instruction=task.instruction,
                   tests=list(task.tests), setup=task.setup, entry_point=task.entry_point,
                   reference=task.reference,
                   split=_mbpp_split(task.number) if task.kind == "mbpp" else "test")


def sync_catalogue(session: Session, tasks: Iterable[Task]) -> int:
    """Insert the benchmark tasks the store does not have yet; returns how many were added."""
    have = set(session.scalars(select(TaskRow.id).where(TaskRow.kind != "user")))
    rows = [task_row(t) for t in tasks if store_task_id(t) not in have]
    session.add_all(rows)
    return len(rows)


def user_task_id(instruction: str, tests: Sequence[str], setup: str) -> str:
    content = json.dumps([instruction, list(tests), setup], ensure_ascii=False)
    return f"user/{uuid.uuid5(_USER_NAMESPACE, content)}"


def ensure_user_task(session: Session, instruction: str, tests: Sequence[str],
                     setup: str = "") -> TaskRow:
    """The user task with exactly this content, created on first use."""
    task_id = user_task_id(instruction, tests, setup)
    row = session.get(TaskRow, task_id)
    if row is None:
        row = TaskRow(id=task_id, kind="user", instruction=instruction, tests=list(tests),
                      setup=setup)
        session.add(row)
        session.flush()
    return row


def get_task(session: Session, task_id: str) -> TaskRow | None:
    return session.get(TaskRow, task_id)


def list_tasks(session: Session, *, kind: str | None = None, split: str | None = None,
               after: str | None = None, limit: int = 100) -> list[TaskRow]:
    """Tasks ordered by id, keyset-paginated: pass the last id seen as ``after``."""
    query = select(TaskRow).order_by(TaskRow.id).limit(limit)
    if kind:
        query = query.where(TaskRow.kind == kind)
    if split:
        query = query.where(TaskRow.split == split)
    if after:
        query = query.where(TaskRow.id > after)
    return list(session.scalars(query))


def count_tasks(session: Session) -> dict[str, int]:
    rows = session.execute(select(TaskRow.kind, func.count()).group_by(TaskRow.kind))
    return {kind: count for kind, count in rows}


def split_task_ids(session: Session, kind: str, split: str) -> list[str]:
    """The ids of one kind's tasks in one split, unordered (the loop orders its rotation)."""
    return list(session.scalars(select(TaskRow.id).where(TaskRow.kind == kind,
                                                         TaskRow.split == split)))


def task_ids_like(session: Session, pattern: str) -> set[str]:
    """The ids matching a SQL LIKE ``pattern`` (``builtin/%``), to add only missing tasks."""
    return set(session.scalars(select(TaskRow.id).where(TaskRow.id.like(pattern))))


def add_tasks(session: Session, rows: Iterable[TaskRow]) -> None:
    """Insert task rows the caller built (the loop's built-in problems, with their splits)."""
    session.add_all(rows)


def tasks_of_kind(session: Session, kind: str, split: str | None = None) -> list[TaskRow]:
    """Every task of a kind (and split, when given), unordered: a benchmark's problem set."""
    query = select(TaskRow).where(TaskRow.kind == kind)
    if split is not None:
        query = query.where(TaskRow.split == split)
    return list(session.scalars(query))
