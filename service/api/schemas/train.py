"""``/v1/train``: a training run started, and a run as stored with its progress."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from service.api.schemas.fields import Answer, IsoTime


class TrainingStarted(Answer):
    """``POST /v1/train`` (202): the run started; follow it at ``GET /v1/train/{id}``."""

    id: str
    status: Literal["running"]


class TrainingRunOut(Answer):
    """``GET /v1/train/{id}``: a run as stored, with its progress from the trainer's events."""

    id: str
    status: Literal["pending", "running", "done", "failed"]
    parent_adapter: str | None
    adapter: str | None = Field(description="the adapter it produced (once done)")
    triples: tuple[int | None, int | None] = Field(
        description="the id range of the triples it was given: [from, to]")
    data: str | None = Field(description="the exported training file")
    config: dict[str, Any] = Field(description="the run's settings; `data` says what it trains "
                                               "on and why")
    metrics: dict[str, Any] | None
    error: str | None
    started_at: IsoTime
    finished_at: IsoTime | None
    step: int
    total_steps: int | None
    loss: float | None
