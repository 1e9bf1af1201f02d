"""``/v1/adapters``: the loop's adapters, promoting one by hand, and rolling back."""

from __future__ import annotations

from typing import Any

import anyio.to_thread
from fastapi import APIRouter

from service.api.deps import ApiKey
from service.api.routes.loop import LoopDep
from service.api.schemas import Id, Strict, problems
from service.loop import state

router = APIRouter(prefix="/v1/adapters", tags=["adapters"], responses=problems(503))


class RollbackIn(Strict):
    to: Id | None = None  # an adapter name, or "base"; None: the one the serving adapter replaced


@router.get("")
async def list_adapters(loop: LoopDep) -> dict[str, Any]:
    """Every adapter (newest first) with its state, lineage and gate figures."""
    loaded = loop.adapters.loaded()
    items = await anyio.to_thread.run_sync(state.adapters, loop.store, loaded)
    return {"alias": getattr(loop.generation.generator, "alias", None) if loop.generation
            else None, "serving": loop.adapters.serving_name(), "items": items}


@router.post("/rollback", dependencies=[ApiKey], responses=problems(400, 401, 404, 422))
async def rollback(loop: LoopDep, body: RollbackIn | None = None) -> dict[str, Any]:
    """Serve an earlier adapter again (reloaded if needed); one call."""
    return await loop.adapters.rollback(body.to if body is not None else None)


@router.post("/{name}/promote", dependencies=[ApiKey], responses=problems(401, 404, 422))
async def promote(name: Id, loop: LoopDep) -> dict[str, Any]:
    """Serve this adapter now, bypassing the gate (recorded as a manual promotion)."""
    return await loop.adapters.promote(name)
