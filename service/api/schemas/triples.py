"""``/v1/triples``: the training triples in the contract's shape, a page at a time."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class TripleOut(BaseModel):
    """The contract's fields (docs/ARCHITECTURE.md) plus ``id``, the cursor, and ``trainable``,
    the split-hygiene mark (false: a held-out task's triple, never exported)."""

    id: int
    sample_id: str
    task_id: str
    kind: str
    instruction: str
    tests: list[str]
    entry_point: str | None
    program: str
    status: str | None
    feedback: str
    reward: Literal["good", "bad"]
    score: float
    source: Literal["sandbox", "external"]
    adapter: str | None
    reference: str | None
    finish_reason: str | None = Field(description="'length': the program was cut at the token "
                                                  "limit; null for submitted programs")
    trainable: bool


class TriplePage(BaseModel):
    items: list[TripleOut]
    next_cursor: int | None
