"""``GET /readyz``: whether each backend answers now."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class Readiness(BaseModel):
    status: Literal["ready", "not ready"]
    checks: dict[str, str] = Field(description="store, sandbox, generator: 'ok', 'disabled' "
                                               "or why not")
    down: list[str]
