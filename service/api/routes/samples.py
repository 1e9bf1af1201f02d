"""``GET /v1/samples/{id}``: a stored sample with its executions and feedback."""

from __future__ import annotations

import anyio.to_thread
from fastapi import APIRouter

from service.api.deps import StoreDep
from service.api.schemas import problems, SampleDetail
from service.core.samples import sample_detail

router = APIRouter(prefix="/v1/samples", tags=["samples"])


@router.get("/{sample_id}", response_model=SampleDetail, responses=problems(404, 422, 503))
async def get_sample(sample_id: str, store: StoreDep) -> SampleDetail:
    return SampleDetail.model_validate(
        await anyio.to_thread.run_sync(sample_detail, store, sample_id))
