"""``/v1/evaluate``: programs run against tests, and each one's result."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from service.api.schemas.fields import Id, LongText, Program, Statement, Strict


class EvaluateRequest(Strict):
    """Exactly one of: ``sample_ids``; ``programs`` + ``tests``; ``task_id`` (+ ``programs``)."""

    sample_ids: list[Id] | None = Field(default=None, max_length=1024)
    programs: list[Program] | None = Field(default=None, max_length=1024)
    tests: list[Statement] | None = Field(default=None, max_length=10_000)
    setup: LongText = ""
    instruction: LongText = Field(
        default="", description="stored with the programs; without it they are not exported as "
                                "training triples")
    task_id: Id | None = None
    timeout: float | None = Field(default=None, gt=0, le=300, description="seconds per program")


class ResultOut(BaseModel):
    sample_id: str
    task_id: str
    execution_id: str
    status: str
    passed: bool
    reward: Literal["good", "bad"]
    score: float
    feedback: str
    tests_passed: int
    tests_total: int
    duration_ms: float
    error_type: str | None


class EvaluateResponse(BaseModel):
    results: list[ResultOut]
