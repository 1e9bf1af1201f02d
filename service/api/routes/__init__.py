"""One router per resource; ``ROUTERS`` is every router the app includes, in documentation
order."""

from __future__ import annotations

from service.api.routes import (
    adapters,
    benchmarks,
    dashboard,
    evaluate,
    feedback,
    generate,
    health,
    loop,
    openai,
    run_code,
    samples,
    tasks,
    train,
    triples,
)

ROUTERS = [generate.router, evaluate.router, feedback.router, samples.router, triples.router,
           tasks.router, health.router, loop.router, train.router, adapters.router,
           benchmarks.router, dashboard.router, openai.router, run_code.router]
