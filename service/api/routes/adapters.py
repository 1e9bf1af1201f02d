"""``/v1/adapters``: the loop's adapters, promoting one by hand, and rolling back."""

from __future__ import annotations

import anyio.to_thread
from fastapi import APIRouter

from service.api.deps import ApiKey, LoopDep
from service.api.schemas import AdapterList, DecisionOut, Id, Strict, problems
from service.loop import state

router = APIRouter(prefix="/v1/adapters", tags=["adapters"], responses=problems(503))


class RollbackIn(Strict):
    to: Id | None = None  # an adapter name, or "base"; None: the one the serving adapter replaced


@router.get("", response_model=AdapterList)
async def list_adapters(loop: LoopDep) -> AdapterList:
    """Every adapter (newest first) with its state, lineage and gate figures."""
    loaded = loop.adapters.loaded()
    items = await anyio.to_thread.run_sync(state.adapters, loop.store, loaded)
    alias = loop.generation.generator.alias if loop.generation else None
    return AdapterList.model_validate({"alias": alias, "serving": loop.adapters.serving_name(),
                                       "items": items})


@router.post("/rollback", response_model=DecisionOut, dependencies=[ApiKey],
             responses=problems(400, 401, 404, 422))
async def rollback(loop: LoopDep, body: RollbackIn | None = None) -> DecisionOut:
    """Serve an earlier adapter again (reloaded if needed); one call."""
    return DecisionOut.model_validate(
        await loop.adapters.rollback(body.to if body is not None else None))


@router.post("/{name}/promote", response_model=DecisionOut, dependencies=[ApiKey],
             responses=problems(401, 404, 422))
async def promote(name: Id, loop: LoopDep) -> DecisionOut:
    """Serve this adapter now, bypassing the gate (recorded as a manual promotion)."""
    return DecisionOut.model_validate(await loop.adapters.promote(name))
