"""``/v1/loop``: start, stop and watch the self-improvement loop (shapes in docs/LOOP.md).

The router's lifespan builds the loop controller after the app's own lifespan built the store,
sandbox and generator, resumes it from the store, and stops it before they close.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Request

from service.api.deps import ApiKey
from service.api.schemas import problems
from service.loop.controller import LoopController


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    services = app.state.services
    loop = LoopController(services.settings, services.store, services.sandbox,
                          services.generation, services.generator_problem)
    app.state.loop = loop
    await loop.startup()
    try:
        yield
    finally:
        await loop.close()


def get_loop(request: Request) -> LoopController:
    return request.app.state.loop


LoopDep = Annotated[LoopController, Depends(get_loop)]

router = APIRouter(prefix="/v1/loop", tags=["loop"], lifespan=_lifespan,
                   responses=problems(503))


@router.get("")
async def loop_status(loop: LoopDep) -> dict[str, Any]:
    """State, round, counts, last decisions and the pass@1 history."""
    return await loop.status()


@router.post("/start", dependencies=[ApiKey], responses=problems(401))
async def start_loop(loop: LoopDep) -> dict[str, Any]:
    """Start collecting rounds (and training when triggered); remembered across restarts."""
    await loop.start()
    return await loop.status()


@router.post("/stop", dependencies=[ApiKey], responses=problems(401))
async def stop_loop(loop: LoopDep) -> dict[str, Any]:
    """Stop collecting; a training run in progress still finishes and is gated."""
    await loop.stop()
    return await loop.status()
