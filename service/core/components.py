"""The service's components, built once: the store (migrated, catalogue loaded), the sandbox,
the evaluator and the generation service.

``leti serve``'s lifespan (``service/api/app.py``) and ``leti experiment``
(``service/experiment/study.py``) both build them here; the HTTP layer only hands them to routes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import anyio.to_thread

from service.core.catalogue import load_catalogue
from service.core.config import Settings
from service.core.evaluation import Evaluator, SandboxExecutor
from service.core.generation import Generation, start_generation
from service.core.metrics import Metrics
from service.store.db import Store


@dataclass
class Services:
    """The store, sandbox, evaluator and generator, built once by ``build_services``."""

    settings: Settings
    store: Store
    sandbox: SandboxExecutor
    evaluator: Evaluator
    metrics: Metrics
    generation: Generation | None = None  # None: the generator is off or did not start
    generator_problem: str | None = None

    async def close(self) -> None:
        """Close the generator, the sandbox and the store, in that order."""
        if self.generation is not None:
            await self.generation.close()
        self.sandbox.close()
        self.store.close()


def make_sandbox_executor(settings: Settings) -> SandboxExecutor:
    """The configured sandbox backend's runner pool, in the executor every batch goes through."""
    from sandbox import make_sandbox

    options: dict[str, Any] = {"memory_mb": settings.sandbox_runner_memory_mb,
                               "pids": settings.sandbox_runner_pids}
    if settings.sandbox_backend == "local":
        options["bounds"] = settings.sandbox_bounds
    pool = make_sandbox(settings.sandbox_backend, workers=settings.sandbox_workers,  # type: ignore[call-overload]
                        pin_cpus=settings.sandbox_pin_cpus, **options)
    return SandboxExecutor(pool, settings.sandbox_backend)


async def build_services(settings: Settings, metrics: Metrics | None = None) -> Services:
    """Open the store (migrated, catalogue loaded), start the sandbox and the generator.

    ``metrics``: the registry executions and generated tokens are counted in (default: a new
    one, for callers that do not export it)."""
    metrics = metrics if metrics is not None else Metrics()
    store = Store(settings.resolved_database_url)
    try:
        await anyio.to_thread.run_sync(store.migrate)
        await anyio.to_thread.run_sync(load_catalogue, store, settings)
        sandbox = await anyio.to_thread.run_sync(make_sandbox_executor, settings)
    except BaseException:
        store.close()
        raise
    evaluator = Evaluator(store, sandbox, settings,
                          on_outcome=lambda o: metrics.executions.labels(o.status.value).inc())
    services = Services(settings, store, sandbox, evaluator, metrics)
    try:
        services.generation, services.generator_problem = await start_generation(
            settings, store, evaluator, metrics)
    except BaseException:
        await services.close()
        raise
    return services
