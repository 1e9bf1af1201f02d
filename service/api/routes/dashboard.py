"""``GET /``: the dashboard, one self-contained HTML page that reads the JSON endpoints.

The page carries its own CSS, JS and SVG charts (no CDN, no build step), so it works on an
air-gapped host; every panel fetches its endpoint and says "not available" on a 404.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

router = APIRouter(tags=["dashboard"])
PAGE = Path(__file__).resolve().parents[1] / "static" / "dashboard.html"


@lru_cache(maxsize=1)
def _page() -> str:
    return PAGE.read_text(encoding="utf-8")


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
async def dashboard() -> HTMLResponse:
    """The loop at a glance: state, pass@1 across adapters, lineage, recent failures."""
    return HTMLResponse(_page(), headers={"Cache-Control": "no-cache"})
