"""The FastAPI application: ``create_app(settings)`` wires middleware, errors and routers; the
one lifespan builds the service's components (``service/core/components.py``), the loop
controller and the benchmark job runner, and closes them in reverse order on shutdown."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import anyio.to_thread
from fastapi import FastAPI

from service.api.errors import install_error_handlers
from service.api.limits import BodySizeLimit
from service.api.metrics import MetricsMiddleware
from service.api.routes import ROUTERS
from service.benchmarks.jobs import BenchmarkJobs
from service.core.components import build_services
from service.core.config import Settings
from service.core.metrics import Metrics
from service.loop.controller import LoopController

log = logging.getLogger(__name__)
API_VERSION = "1"


def create_app(settings: Settings | None = None) -> FastAPI:
    """The app for ``settings`` (default: read from the environment and ``.env`` now)."""
    settings = settings or Settings()
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        """Store, sandbox and generator; then the loop (resumed from the store) and the
        benchmark jobs (runs a previous process left unfinished marked failed). Shutdown:
        runs in flight cancelled (stored as interrupted), the loop and its trainer stopped,
        then the generator, sandbox and store closed."""
        async with AsyncExitStack() as stack:
            services = await build_services(settings, metrics)
            stack.push_async_callback(services.close)
            loop = LoopController(settings, services.store, services.sandbox,
                                  services.generation, services.generator_problem)
            stack.push_async_callback(loop.close)
            await loop.startup()
            jobs = await anyio.to_thread.run_sync(
                BenchmarkJobs, services.store, services.sandbox, settings.sandbox_memory_mb)
            stack.push_async_callback(jobs.close)
            # what deps.py hands to routes (ServicesDep, LoopDep, BenchmarkJobsDep)
            app.state.services, app.state.loop, app.state.benchmark_jobs = services, loop, jobs
            yield

    app = FastAPI(title="leti-loop", version=API_VERSION, lifespan=lifespan, docs_url="/docs",
                  description="Generate programs, run them in a sandbox, collect feedback, "
                              "and export training triples (LETI). See docs/API.md.")
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(MetricsMiddleware, metrics=metrics)  # outermost: sees every answer
    install_error_handlers(app)
    for router in ROUTERS:
        app.include_router(router)
    return app
