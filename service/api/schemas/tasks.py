"""``/v1/tasks``: a task submitted, stored, and listed a page at a time."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from service.api.schemas.fields import LongText, Statement, Strict


class TaskIn(Strict):
    instruction: LongText = Field(min_length=1, description="the task in words")
    tests: list[Statement] = Field(default_factory=list, max_length=1000,
                                   description="assert statements the program must pass")
    setup: LongText = ""


class TaskOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    kind: Literal["mbpp", "humaneval", "user"]
    instruction: str
    tests: list[str]
    setup: str
    entry_point: str | None
    reference: str | None
    split: str | None


class TaskPage(BaseModel):
    items: list[TaskOut]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page")
