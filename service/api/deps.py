"""What routes depend on, as ``Annotated`` aliases over what the app's lifespan built once.

Routes never construct a store, sandbox, model, loop or job runner: they name ``StoreDep``,
``EvaluatorDep``, ``LoopDep``, ``BenchmarkJobsDep``... and FastAPI hands them the instances the
lifespan (``service/api/app.py``) put on ``app.state``.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request, Security
from fastapi.security import APIKeyHeader

from service.benchmarks.jobs import BenchmarkJobs
from service.core.components import Services
from service.core.config import Settings
from service.core.errors import Unavailable
from service.core.evaluation import Evaluator
from service.core.generation import Generation
from service.core.metrics import Metrics
from service.core.security import API_KEY_HEADER, key_matches
from service.loop.controller import LoopController
from service.store.db import Store


def get_services(request: Request) -> Services:
    return request.app.state.services


def get_loop(request: Request) -> LoopController:
    return request.app.state.loop


def get_benchmark_jobs(request: Request) -> BenchmarkJobs:
    return request.app.state.benchmark_jobs


ServicesDep = Annotated[Services, Depends(get_services)]
LoopDep = Annotated[LoopController, Depends(get_loop)]
BenchmarkJobsDep = Annotated[BenchmarkJobs, Depends(get_benchmark_jobs)]


def get_settings(services: ServicesDep) -> Settings:
    return services.settings


def get_store(services: ServicesDep) -> Store:
    return services.store


def get_evaluator(services: ServicesDep) -> Evaluator:
    return services.evaluator


def get_metrics(services: ServicesDep) -> Metrics:
    return services.metrics


def get_generation(services: ServicesDep) -> Generation:
    """The generation service, or a 503 that says why there is none."""
    if services.generation is None:
        raise Unavailable("generator", services.generator_problem or "not configured")
    return services.generation


SettingsDep = Annotated[Settings, Depends(get_settings)]
StoreDep = Annotated[Store, Depends(get_store)]
EvaluatorDep = Annotated[Evaluator, Depends(get_evaluator)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
GenerationDep = Annotated[Generation, Depends(get_generation)]

_api_key_header = APIKeyHeader(name=API_KEY_HEADER, auto_error=False,
                               description="required on state-changing endpoints when the "
                                           "server has LETI_API_KEY set")


def require_api_key(settings: SettingsDep,
                    key: Annotated[str | None, Security(_api_key_header)] = None) -> None:
    """401 unless the request carries the configured key (no key configured: open)."""
    if not key_matches(settings.api_key, key):
        raise HTTPException(401, f"missing or wrong API key: send it in the {API_KEY_HEADER} "
                                 "header", headers={"WWW-Authenticate": "ApiKey"})


ApiKey = Depends(require_api_key)
