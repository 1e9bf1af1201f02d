"""Task rows: the MBPP/HumanEval catalogue (loaded at start-up) and users' own tasks.

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
