"""``/v1/adapters``: every adapter the loop made, with its state and lineage."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from service.api.schemas.fields import Answer, IsoTime


class AdapterOut(Answer):
    name: str
    state: Literal["candidate", "serving", "retired", "rejected"]
    path: str
    base_model: str
    parent: str | None = Field(description="the adapter its training started from")
    metrics: dict[str, Any] | None = Field(description="training and gate figures")
    training_run: str | None
    loaded: bool = Field(description="loaded in the serving generator now")
    created_at: IsoTime


class AdapterList(Answer):
    """``GET /v1/adapters``: every adapter the loop made, newest first."""

    alias: str | None = Field(description="the name that always means the serving adapter")
    serving: str | None
    items: list[AdapterOut]
