"""The error answers every route can give, as the OpenAPI schema declares them."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class Problem(BaseModel):
    """Every error answer: what went wrong, in words (a list of problems for a 422)."""

    detail: str | list[dict[str, Any]]
    component: str | None = Field(default=None,
                                  description="on a 503: store, sandbox or generator")


_WHY = {400: "the body is not valid JSON text", 401: "missing or wrong X-API-Key",
        404: "an id that does not exist", 409: "conflicts with work in progress (e.g. a run)",
        413: "over a limit (the message names the setting)", 422: "invalid request",
        503: "a backend is down (named in 'component')"}


def problems(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for the error answers a route can give."""
    return {code: {"model": Problem, "description": _WHY[code]} for code in codes}
