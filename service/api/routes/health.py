"""``/healthz`` (the process answers), ``/readyz`` (its backends answer), ``/metrics``."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse

from service.api.deps import MetricsDep, ServicesDep
from service.api.schemas import Readiness
from service.core.readiness import check_ready

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", response_model=Readiness,
            responses={503: {"model": Readiness, "description": "a backend is down ('down')"}})
async def readyz(services: ServicesDep) -> JSONResponse:
    """Store, sandbox and generator each checked now; 503 names whichever is down."""
    report = await check_ready(services.store, services.sandbox, services.generation,
                               services.generator_problem,
                               services.settings.generator_backend != "none")
    return JSONResponse(report, status_code=200 if not report["down"] else 503)


@router.get("/metrics", response_class=Response,
            responses={200: {"content": {"text/plain": {}}}})
async def metrics(metrics: MetricsDep) -> Response:
    """Prometheus text format."""
    return Response(metrics.render(), media_type=metrics.content_type)
