"""The FastAPI application: ``create_app(settings)`` wires middleware, errors and routers; the
lifespan builds the store, sandbox and generator once and closes them on shutdown."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio.to_thread
from fastapi import FastAPI

from service.api.deps import Services
from service.api.errors import install_error_handlers
from service.api.limits import BodySizeLimit
from service.api.metrics import Metrics, MetricsMiddleware
from service.api.routes import ROUTERS
from service.api.routes import adapters, loop, train
from service.api.routes import openai as openai_routes
from service.api.routes import run_code as run_code_routes
from service.api.routes import benchmarks as benchmarks_routes
from service.api.routes import dashboard as dashboard_routes
from service.core.catalogue import load_catalogue
from service.core.config import Settings
from service.core.evaluation import Evaluator, SandboxGate
from service.core.generation import start_generation
from service.store.db import Store

log = logging.getLogger(__name__)
API_VERSION = "1"


def _sandbox(settings: Settings) -> SandboxGate:
    from sandbox import make_sandbox

    options = {"memory_mb": settings.sandbox_runner_memory_mb,
               "pids": settings.sandbox_runner_pids}
    if settings.sandbox_backend == "local":
        options["bounds"] = settings.sandbox_bounds
    pool = make_sandbox(settings.sandbox_backend, workers=settings.sandbox_workers,  # type: ignore[call-overload]
                        pin_cpus=settings.sandbox_pin_cpus, **options)
    return SandboxGate(pool, settings.sandbox_backend)


async def build_services(settings: Settings, metrics: Metrics) -> Services:
    """Open the store (migrated, catalogue loaded), start the sandbox and the generator."""
    store = Store(settings.resolved_database_url)
    try:
        await anyio.to_thread.run_sync(store.migrate)
        await anyio.to_thread.run_sync(load_catalogue, store, settings)
        sandbox = await anyio.to_thread.run_sync(_sandbox, settings)
    except BaseException:
        store.close()
        raise
    evaluator = Evaluator(store, sandbox, settings,
                          on_outcome=lambda o: metrics.executions.labels(o.status.value).inc())
    services = Services(settings, store, sandbox, evaluator, metrics)
    services.generation, services.generator_problem = await start_generation(
        settings, store, evaluator, metrics)
    return services


def create_app(settings: Settings | None = None) -> FastAPI:
    """The app for ``settings`` (default: read from the environment and ``.env`` now)."""
    settings = settings or Settings()
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services = await build_services(settings, metrics)
        app.state.services = services
        try:
            yield
        finally:
            await services.close()

    app = FastAPI(title="leti-loop", version=API_VERSION, lifespan=lifespan, docs_url="/docs",
                  description="Generate programs, run them in a sandbox, collect feedback, "
                              "and export training triples (LETI). See docs/API.md.")
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(MetricsMiddleware, metrics=metrics)  # outermost: sees every answer
    install_error_handlers(app)
    for router in ROUTERS:
        app.include_router(router)
    app.include_router(loop.router)
    app.include_router(train.router)
    app.include_router(adapters.router)
    app.include_router(benchmarks_routes.router)
    app.include_router(dashboard_routes.router)
    app.include_router(openai_routes.router)
    app.include_router(run_code_routes.router)
    return app
