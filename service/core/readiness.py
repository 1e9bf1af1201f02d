"""Readiness: is each backend answering right now? (``GET /readyz``)."""

from __future__ import annotations

import asyncio
from typing import Any

import anyio.to_thread

from service.core.errors import Unavailable
from service.core.evaluation import SandboxExecutor
from service.store.db import Store, StoreUnavailable

CHECK_TIMEOUT_S = 15.0
DISABLED = "disabled"


async def _store(store: Store) -> str:
    try:
        await anyio.to_thread.run_sync(store.ping)
    except StoreUnavailable as exc:
        return str(exc)
    return "ok"


async def _sandbox(sandbox: SandboxExecutor) -> str:
    try:
        return await asyncio.wait_for(sandbox.check(), CHECK_TIMEOUT_S)
    except TimeoutError:
        return f"no answer within {CHECK_TIMEOUT_S:g} s"
    except Unavailable as exc:
        return str(exc)


async def _generator(generation: Any, problem: str | None, enabled: bool) -> str:
    if not enabled:
        return DISABLED
    if generation is None:
        return problem or "not configured"
    try:  # a server is asked; a model in this process always answers
        await asyncio.wait_for(generation.generator.check(), CHECK_TIMEOUT_S)
    except Exception as exc:  # noqa: BLE001 - whatever the failure, the generator is down
        return f"{type(exc).__name__}: {exc}"
    return "ok"


async def check_ready(store: Store, sandbox: SandboxExecutor, generation: Any,
                      problem: str | None, generator_enabled: bool = True) -> dict[str, Any]:
    """``{"status", "checks": {name: "ok" | "disabled" | why}, "down": [names]}``; a generator
    switched off (``LETI_GENERATOR_BACKEND=none``) is not "down"."""
    results = await asyncio.gather(_store(store), _sandbox(sandbox),
                                   _generator(generation, problem, generator_enabled))
    checks = dict(zip(("store", "sandbox", "generator"), results, strict=True))
    down = [name for name, state in checks.items() if state not in ("ok", DISABLED)]
    return {"status": "ready" if not down else "not ready", "checks": checks, "down": down}
