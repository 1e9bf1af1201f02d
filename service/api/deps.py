"""What routes depend on, as ``Annotated`` aliases over the services the lifespan built once.

Routes never construct a store, sandbox or model: they name ``StoreDep``, ``EvaluatorDep``... and
FastAPI hands them the instances kept on ``app.state.services``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request, Security
from fastapi.security import APIKeyHeader

from service.api.metrics import Metrics
from service.core.config import Settings
from service.core.errors import Unavailable
from service.core.evaluation import Evaluator, SandboxGate
from service.core.generation import Generation
from service.core.security import API_KEY_HEADER, key_matches
from service.store.db import Store


@dataclass
class Services:
    """Everything built in the lifespan, once."""

    settings: Settings
    store: Store
    sandbox: SandboxGate
    evaluator: Evaluator
    metrics: Metrics
    generation: Generation | None = None  # None: the generator is off or did not start
    generator_problem: str | None = None

    async def close(self) -> None:
        if self.generation is not None:
            await self.generation.close()
        self.sandbox.close()
        self.store.close()


def get_services(request: Request) -> Services:
    return request.app.state.services


ServicesDep = Annotated[Services, Depends(get_services)]


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


def require_api_key(services: ServicesDep,
                    key: Annotated[str | None, Security(_api_key_header)] = None) -> None:
    """401 unless the request carries the configured key (no key configured: open)."""
    if not key_matches(services.settings.api_key, key):
        raise HTTPException(401, f"missing or wrong API key: send it in the {API_KEY_HEADER} "
                                 "header", headers={"WWW-Authenticate": "ApiKey"})


ApiKey = Depends(require_api_key)
