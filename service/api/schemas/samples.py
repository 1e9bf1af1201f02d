"""``/v1/samples/{id}``: a stored sample with its executions and feedback."""

from __future__ import annotations

from pydantic import BaseModel


class ExecutionOut(BaseModel):
    id: str
    status: str
    reward: str
    score: float
    feedback: str
    duration_ms: float


class StoredFeedbackOut(BaseModel):
    id: str
    label: str | None
    score: float | None
    text: str
    raw: dict


class SampleDetail(BaseModel):
    id: str
    task_id: str
    program: str
    origin: str
    model: str | None
    adapter: str | None
    sampling: dict | None
    executions: list[ExecutionOut]
    feedback: list[StoredFeedbackOut]
