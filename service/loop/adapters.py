"""Changing the serving adapter: gate a candidate, promote, roll back, and restore after a
restart, each recorded in the store and applied to the running generator with no restart.

Hot reload uses the generator's own bookkeeping (service/generation/base.py): load the adapter
under its versioned name, move the alias, then unload the previous version once its in-flight
requests finished. This works the same on the embedded backend and behind vLLM. One lock
serialises changes, so a gate and a manual promotion never interleave.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio.to_thread

from service.core.config import Settings
from service.core.errors import InvalidRequest, NotFound, Unavailable
from service.core.evaluation import SandboxExecutor
from service.core.generation import Generation
from service.loop import state
from service.loop.gate import gate_spec, paired_decision, pass_at_1
from service.store import lineage
from service.store.db import Store
from service.store.models import AdapterRow

if TYPE_CHECKING:
    from service.generation.base import Generator

log = logging.getLogger(__name__)
BASE_GATE_KEY = "base_gate"


class AdapterSwitch:
    """The store's view of adapters, kept in step with the generator's."""

    def __init__(self, settings: Settings, store: Store, sandbox: SandboxExecutor,
                 generation: Generation | None) -> None:
        self.settings = settings
        self.store = store
        self.sandbox = sandbox
        self.generation = generation
        self._lock = asyncio.Lock()
        self._unloads: set[asyncio.Task[None]] = set()

    @property
    def generator(self) -> Generator:
        if self.generation is None:
            raise Unavailable("generator", "no generator: adapters cannot be served")
        return self.generation.generator

    def serving_name(self) -> str | None:
        return self.generation.generator.serving if self.generation is not None else None

    def loaded(self) -> set[str]:
        if self.generation is None:
            return set()
        return {a.name for a in self.generation.generator.list_adapters() if not a.retiring}

    def _row(self, name: str) -> AdapterRow:
        with self.store.read() as session:
            row = lineage.get_adapter(session, name)
        if row is None:
            raise NotFound(f"no adapter {name!r} (list them with GET /v1/adapters)")
        return row

    async def _ensure_loaded(self, row: AdapterRow) -> None:
        if row.id in self.loaded():
            return
        if any(a.name == row.id for a in self.generator.list_adapters()):
            await self.wait()  # being unloaded (retiring): let that finish, then load it again
        if not Path(row.path).is_dir():
            raise InvalidRequest(f"adapter {row.id!r}: its directory {row.path} is gone")
        await self.generator.load_adapter(row.id, row.path)

    async def _switch_to(self, name: str | None) -> None:
        """Move the alias, then retire what served before (after its requests finish)."""
        previous = self.generator.serving
        await self.generator.activate(name)
        if previous is not None and previous != name:
            self._unload_later(previous)

    def _unload_later(self, name: str) -> None:
        async def unload() -> None:
            try:
                await self.generator.unload_adapter(name)
            except Exception:
                log.exception("could not unload adapter %s", name)
        task = asyncio.get_running_loop().create_task(unload())
        self._unloads.add(task)
        task.add_done_callback(self._unloads.discard)

    async def wait(self) -> None:
        while self._unloads:
            await asyncio.gather(*list(self._unloads), return_exceptions=True)

    async def restore_serving(self) -> None:
        """After a restart: serve the adapter the store says serves (if it is still there)."""
        with self.store.read() as session:
            row = lineage.serving_adapter(session)
        if row is None or self.generator.serving == row.id:
            return
        try:
            await self._ensure_loaded(row)
            await self.generator.activate(row.id)
            log.info("serving adapter %s again after the restart", row.id)
        except Exception:
            log.exception("could not restore serving adapter %s", row.id)

    # -- the gate ----------------------------------------------------------------------------
    async def _serving_figure(self, spec_key: dict[str, Any]) -> dict[str, Any]:
        """The serving adapter's per-problem results under this spec: stored if measured so
        (they are reused, not re-sampled), else measured now and stored."""
        serving = self.generator.serving
        if serving is not None:
            stored = (self._row(serving).metrics or {}).get("gate")
        else:
            stored = await anyio.to_thread.run_sync(state.get_value, self.store, BASE_GATE_KEY)
        if stored and "results" in stored and all(stored.get(k) == v
                                                   for k, v in spec_key.items()):
            return dict(stored)
        figure = await self._measure(spec_key, serving)
        await anyio.to_thread.run_sync(self._save_figure, serving, figure)
        return figure

    async def _measure(self, spec_key: dict[str, Any], adapter: str | None) -> dict[str, Any]:
        from service.loop.gate import GateSpec

        spec = GateSpec(tuple(spec_key["problems"]), spec_key["seed"], spec_key["temperature"],
                        spec_key["max_new_tokens"])
        assert self.generation is not None
        return await pass_at_1(spec, adapter, generator=self.generator,
                               tokenizer=self.generation.tokenizer, store=self.store,
                               sandbox=self.sandbox, settings=self.settings)

    def _save_figure(self, adapter: str | None, figure: dict[str, Any]) -> None:
        if adapter is None:
            state.set_values(self.store, **{BASE_GATE_KEY: figure})
            return
        with self.store.write() as session:
            row = lineage.get_adapter(session, adapter)
            if row is not None:
                row.metrics = {**(row.metrics or {}), "gate": figure}

    async def gate(self, name: str) -> dict[str, Any]:
        """Measure candidate ``name`` against the serving adapter on the same problems and
        decide, paired over problems (``gate.paired_decision``): promoted, it serves now;
        refused, it is unloaded, recorded ``rejected``, and the serving adapter stays."""
        async with self._lock:
            row = self._row(name)
            problems = await anyio.to_thread.run_sync(state.task_ids, self.store, "validation")
            spec = gate_spec(problems, self.settings).key()
            serving = await self._serving_figure(spec)
            await self._ensure_loaded(row)
            candidate = await self._measure(spec, name)
            await anyio.to_thread.run_sync(self._save_figure, name, candidate)
            decision = paired_decision(candidate, serving, margin=self.settings.gate_margin,
                                       confidence=self.settings.gate_confidence,
                                       min_detectable=self.settings.gate_min_detectable,
                                       seed=self.settings.gate_seed)
            metrics = {**decision.metrics, "serving": serving["adapter"], **spec}
            if decision.promote:
                await self._switch_to(name)
            else:
                self._unload_later(name)
            return await anyio.to_thread.run_sync(
                self._decide, name, "promote" if decision.promote else "reject",
                decision.reason, metrics)

    def _decide(self, name: str, decision: lineage.Decision, reason: str,
                metrics: dict[str, Any] | None) -> dict[str, Any]:
        with self.store.write() as session:
            return state.decision_json(lineage.decide(session, name, decision, reason, metrics))

    # -- manual changes ----------------------------------------------------------------------
    async def promote(self, name: str) -> dict[str, Any]:
        """Serve ``name`` now, without the gate (an operator's decision, recorded as such)."""
        async with self._lock:
            row = self._row(name)
            await self._ensure_loaded(row)
            await self._switch_to(name)
            return await anyio.to_thread.run_sync(self._decide, name, "promote",
                                                  "promoted by hand (POST /v1/adapters/"
                                                  f"{name}/promote)", None)

    async def rollback(self, to: str | None) -> dict[str, Any]:
        """Serve an earlier adapter again: ``to``, or the one the serving adapter replaced
        (the base model when it replaced none). Reloaded if it had been unloaded."""
        async with self._lock:
            current = self.generator.serving
            if current is None and to is None:
                raise InvalidRequest("the base model is serving: nothing to roll back")
            target = to if to is not None else await anyio.to_thread.run_sync(
                self._replaced_by, current)
            if target in (None, "base"):
                await self._switch_to(None)
                return await anyio.to_thread.run_sync(self._to_base, current)
            row = self._row(target)
            await self._ensure_loaded(row)
            await self._switch_to(target)
            return await anyio.to_thread.run_sync(
                self._decide, target, "rollback", f"rolled back from {current or 'base'}", None)

    def _replaced_by(self, name: str | None) -> str | None:
        with self.store.read() as session:
            row = lineage.last_serving_decision(session, name)
            return row.previous_adapter_id if row is not None else None

    def _to_base(self, current: str | None) -> dict[str, Any]:
        """Back to the base model: the serving adapter is rejected, the decision recorded."""
        with self.store.write() as session:
            row = lineage.get_adapter(session, current) if current else None
            if row is None:
                raise InvalidRequest("the base model is serving already")
            return state.decision_json(lineage.rollback_to_base(session, row))
