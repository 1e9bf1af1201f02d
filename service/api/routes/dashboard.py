"""``GET /``: the dashboard, one self-contained HTML page that reads the JSON endpoints.

The page carries its own CSS, JS and SVG charts (no CDN, no build step), so it works on an
air-gapped host; every panel fetches its endpoint and says "not available" on a 404.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated

import anyio.to_thread
from fastapi import APIRouter, Query
from fastapi.responses import HTMLResponse
from pydantic import BaseModel

from service.api.deps import StoreDep
from service.api.routes.benchmarks import Timestamp
from service.api.schemas import problems
from service.store import samples
from service.store.db import Store

router = APIRouter(tags=["dashboard"])
PAGE = Path(__file__).resolve().parents[1] / "static" / "dashboard.html"


@lru_cache(maxsize=1)
def _page() -> str:
    return PAGE.read_text(encoding="utf-8")


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
async def dashboard() -> HTMLResponse:
    """The loop at a glance: state, pass@1 across adapters, lineage, recent failures."""
    return HTMLResponse(_page(), headers={"Cache-Control": "no-cache"})


class FailureOut(BaseModel):
    sample_id: str
    task_id: str
    adapter: str | None
    origin: str  # generated | submitted
    status: str
    feedback: str
    created_at: Timestamp


class FailurePage(BaseModel):
    items: list[FailureOut]


def recent_failures(store: Store, limit: int) -> list[FailureOut]:
    """The newest executions that earned the "bad" reward, with LETI's textual feedback."""
    with store.read() as session:
        return [FailureOut(sample_id=s.id, task_id=s.task_id, adapter=s.adapter, origin=s.origin,
                           status=e.status,
                           feedback=e.feedback, created_at=e.created_at)
                for e, s in samples.recent_failures(session, limit)]


@router.get("/v1/dashboard/failures", response_model=FailurePage, responses=problems(422, 503))
async def failures(store: StoreDep,
                   limit: Annotated[int, Query(ge=1, le=100)] = 10) -> FailurePage:
    """Recent failed programs and their feedback, newest first (the dashboard's panel)."""
    return FailurePage(items=await anyio.to_thread.run_sync(recent_failures, store, limit))
