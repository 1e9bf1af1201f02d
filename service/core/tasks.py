"""Task use cases: list the catalogue, look one up, add a user's own task."""

from __future__ import annotations

from service.core.errors import InvalidRequest, NotFound
from service.store import tasks as queries
from service.store.db import Store
from service.store.models import TaskRow


def task_page(store: Store, kind: str | None, split: str | None, after: str | None,
              limit: int) -> tuple[list[TaskRow], str | None]:
    """One page of tasks and the cursor of the next (None at the end)."""
    with store.read() as session:
        rows = queries.list_tasks(session, kind=kind, split=split, after=after, limit=limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (rows[-1].id if more else None)


def find_task(store: Store, task_id: str) -> TaskRow:
    with store.read() as session:
        row = queries.get_task(session, task_id)
    if row is None:
        raise NotFound(f"no task {task_id!r} (list them with GET /v1/tasks)")
    return row


def create_user_task(store: Store, instruction: str, tests: list[str], setup: str) -> TaskRow:
    """The task with this content (created on first use: the same content, the same id)."""
    if not instruction.strip():
        raise InvalidRequest("a task needs a non-empty instruction")
    for number, test in enumerate(tests, start=1):
        try:
            compile(test, f"<test {number}>", "exec")
        except (SyntaxError, ValueError) as exc:
            raise InvalidRequest(f"test {number} is not valid Python: {exc}") from None
    with store.write() as session:
        return queries.ensure_user_task(session, instruction, tests, setup)
