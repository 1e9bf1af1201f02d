"""``/v1/train``: start a training run by hand and follow it (progress from the trainer's
events)."""

from __future__ import annotations

import anyio.to_thread
from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import Field

from service.api.deps import ApiKey, LoopDep, StoreDep
from service.api.schemas import Id, Strict, TrainingRunOut, TrainingStarted, problems
from service.core.errors import NotFound
from service.loop.controller import TrainingBusy
from service.loop.training import run_progress
from service.loop.training_data import NothingToTrain

router = APIRouter(prefix="/v1/train", tags=["training"], responses=problems(503))


class TrainIn(Strict):
    # gate the candidate when the run finishes (promote or reject); steps: LETI_TRAIN_STEPS
    gate: bool = Field(default=True, strict=True)
    steps: int | None = Field(default=None, ge=1, le=1_000_000, strict=True)


@router.post("", response_model=TrainingStarted, status_code=202, dependencies=[ApiKey],
             responses=problems(400, 401, 409, 422))
async def start_training(loop: LoopDep,
                         body: TrainIn | None = None) -> TrainingStarted | JSONResponse:
    """Train on the triples no finished run has seen yet; 409 while a run is in progress or
    when there is nothing new."""
    try:
        body = body or TrainIn()
        run_id = await loop.train(gate=body.gate, steps=body.steps)
    except (TrainingBusy, NothingToTrain) as exc:
        return JSONResponse({"detail": str(exc)}, status_code=409)
    return TrainingStarted(id=run_id, status="running")


@router.get("/{run_id}", response_model=TrainingRunOut, responses=problems(404))
async def training_run(run_id: Id, store: StoreDep) -> TrainingRunOut:
    """A run: status, step/total_steps/loss from its events, its adapter or its error."""
    found = await anyio.to_thread.run_sync(run_progress, store, run_id)
    if found is None:
        raise NotFound(f"no training run {run_id!r}")
    return TrainingRunOut.model_validate(found)
