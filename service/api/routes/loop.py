"""``/v1/loop``: start, stop and watch the self-improvement loop (shapes in docs/LOOP.md).

The controller is built (and resumed from the store) by the app's lifespan; routes reach it
through ``LoopDep``."""

from __future__ import annotations

from fastapi import APIRouter

from service.api.deps import ApiKey, LoopDep
from service.api.schemas import LoopStatus, problems

router = APIRouter(prefix="/v1/loop", tags=["loop"], responses=problems(503))


@router.get("", response_model=LoopStatus)
async def loop_status(loop: LoopDep) -> LoopStatus:
    """State, round, counts, last decisions and the pass@1 history."""
    return LoopStatus.model_validate(await loop.status())


@router.post("/start", response_model=LoopStatus, dependencies=[ApiKey], responses=problems(401))
async def start_loop(loop: LoopDep) -> LoopStatus:
    """Start collecting rounds (and training when triggered); remembered across restarts."""
    await loop.start()
    return LoopStatus.model_validate(await loop.status())


@router.post("/stop", response_model=LoopStatus, dependencies=[ApiKey], responses=problems(401))
async def stop_loop(loop: LoopDep) -> LoopStatus:
    """Stop collecting; a training run in progress still finishes and is gated."""
    await loop.stop()
    return LoopStatus.model_validate(await loop.status())
