"""``/v1/tasks``: the MBPP/HumanEval catalogue and users' own tasks."""

from __future__ import annotations

from typing import Annotated

import anyio.to_thread
from fastapi import APIRouter, Query

from service.api.deps import ApiKey, StoreDep
from service.api.schemas import Id, TaskIn, TaskOut, TaskPage, problems
from service.core import tasks

router = APIRouter(prefix="/v1/tasks", tags=["tasks"], responses=problems(422, 503))


@router.get("", response_model=TaskPage)
async def list_tasks(store: StoreDep,
                     kind: Annotated[str | None, Query(pattern="^(mbpp|humaneval|user)$")] = None,
                     split: Annotated[str | None, Query(max_length=32)] = None,
                     cursor: Annotated[Id | None, Query()] = None,
                     limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> TaskPage:
    """Tasks ordered by id; pass ``next_cursor`` back as ``cursor`` for the next page."""
    rows, next_cursor = await anyio.to_thread.run_sync(tasks.task_page, store, kind, split,
                                                       cursor, limit)
    return TaskPage(items=[TaskOut.model_validate(r) for r in rows], next_cursor=next_cursor)


@router.post("", response_model=TaskOut, status_code=201, dependencies=[ApiKey],
             responses=problems(400, 401, 413))
async def create_task(body: TaskIn, store: StoreDep) -> TaskOut:
    """A user task (``user/<uuid>``: the same content always gets the same id)."""
    row = await anyio.to_thread.run_sync(tasks.create_user_task, store, body.instruction,
                                         body.tests, body.setup)
    return TaskOut.model_validate(row)


@router.get("/{task_id:path}", response_model=TaskOut, responses=problems(404))
async def get_task(task_id: str, store: StoreDep) -> TaskOut:
    """One task by id (ids contain slashes: ``/v1/tasks/humaneval/HumanEval/0``)."""
    return TaskOut.model_validate(await anyio.to_thread.run_sync(tasks.find_task, store, task_id))
