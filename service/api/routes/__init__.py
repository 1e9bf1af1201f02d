"""One router per resource; ``ROUTERS`` is what the app includes, in documentation order."""

from __future__ import annotations

from service.api.routes import evaluate, feedback, generate, health, samples, tasks, triples

ROUTERS = [generate.router, evaluate.router, feedback.router, samples.router, triples.router,
           tasks.router, health.router]
