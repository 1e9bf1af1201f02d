"""``POST /v1/generate``: sample programs for a task (and, if asked, evaluate them at once)."""

from __future__ import annotations

from fastapi import APIRouter

from service.api.deps import ApiKey, GenerationDep
from service.api.routes.evaluate import result_out
from service.api.schemas import problems, GenerateRequest, GenerateResponse, SampleOut
from service.core.generation import GenerationInput

router = APIRouter(prefix="/v1", tags=["generate"])


@router.post("/generate", response_model=GenerateResponse, dependencies=[ApiKey],
             responses=problems(400, 401, 404, 413, 422, 503))
async def generate(body: GenerateRequest, generation: GenerationDep) -> GenerateResponse:
    """``n`` samples for ``task_id`` or ``instruction``; stored, with ids, before answering."""
    what = GenerationInput(task_id=body.task_id, instruction=body.instruction,
                           tests=tuple(body.tests), setup=body.setup, n=body.n,
                           adapter=body.adapter, condition_on_good=body.condition_on_good,
                           evaluate=body.evaluate, **body.sampling.model_dump())
    done = await generation.generate(what)
    return GenerateResponse(
        task_id=done.task_id, model=done.model, adapter=done.adapter,
        conditioned_on=done.conditioned_on,
        samples=[SampleOut(id=g.sample.id, task_id=g.sample.task_id, program=g.sample.program,
                           completion=g.sample.completion or "", adapter=g.sample.adapter,
                           finish_reason=g.sample.finish_reason or "",
                           prompt_tokens=g.sample.prompt_tokens or 0,
                           completion_tokens=g.sample.completion_tokens or 0,
                           result=result_out(g.result) if g.result else None)
                 for g in done.samples])
