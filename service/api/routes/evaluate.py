"""``POST /v1/evaluate``: run programs in the sandbox and store outcomes with their feedback."""

from __future__ import annotations

from fastapi import APIRouter

from service.api.deps import ApiKey, EvaluatorDep
from service.api.schemas import problems, EvaluateRequest, EvaluateResponse, ResultOut
from service.core.evaluation import Evaluated, EvaluationInput

router = APIRouter(prefix="/v1", tags=["evaluate"])


def result_out(result: Evaluated) -> ResultOut:
    outcome = result.outcome
    return ResultOut(sample_id=result.sample_id, task_id=result.task_id,
                     execution_id=result.execution_id, status=outcome.status.value,
                     passed=outcome.passed, reward=result.reward, score=result.score,
                     feedback=result.feedback, tests_passed=outcome.tests_passed,
                     tests_total=outcome.tests_total, duration_ms=outcome.duration_ms,
                     error_type=outcome.error_type)


@router.post("/evaluate", response_model=EvaluateResponse, dependencies=[ApiKey],
             responses=problems(400, 401, 404, 413, 422, 503))
async def evaluate(body: EvaluateRequest, evaluator: EvaluatorDep) -> EvaluateResponse:
    """Run ``sample_ids``, or ``programs`` with ``tests``, or a ``task_id``'s programs (or its
    samples that never ran); every result is committed before this answers."""
    results = await evaluator.evaluate(EvaluationInput(**body.model_dump()))
    return EvaluateResponse(results=[result_out(r) for r in results])
