"""The loop's controller: an asyncio task that collects rounds, triggers training in a trainer
subprocess, gates the candidate, and hot-swaps the winner into the serving generator.

Nothing here blocks the event loop: store work runs in threads, training in its own process,
generation on the generator's threads. State lives in the store (``loop_state``, training runs,
adapters, promotions), so a restarted service resumes where it was: the round and task cursor
continue, the serving adapter is loaded again, and a run left ``running`` is recorded failed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable
from functools import partial
from typing import Any

import anyio.to_thread

from service.core.config import Settings
from service.core.errors import Unavailable
from service.core.evaluation import SandboxExecutor
from service.core.generation import Generation
from service.loop import state
from service.loop.adapters import AdapterSwitch
from service.loop.rounds import (
    RoundContext,
    TrainedRound,
    loop_plan,
    next_batch,
    pool,
    run_round,
    train_and_gate,
)
from service.loop.training import TrainerProcess, fail_interrupted_runs, prepare_run
from service.loop.training_data import NothingToTrain
from service.store.db import Store

log = logging.getLogger(__name__)
ERROR_PAUSE_S = 5.0


class TrainingBusy(RuntimeError):
    """A training run is already in progress (answered 409)."""


class LoopController:
    """Owns the background loop, the training run in progress and adapter changes."""

    def __init__(self, settings: Settings, store: Store, sandbox: SandboxExecutor,
                 generation: Generation | None, generator_problem: str | None = None) -> None:
        self.settings = settings
        self.store = store
        self.generation = generation
        self.generator_problem = generator_problem
        self.adapters = AdapterSwitch(settings, store, sandbox, generation)
        self.task_source: str | None = None
        self.phase = "idle"
        self.last_error: str | None = None
        self.last_round: dict[str, Any] | None = None
        self._task: asyncio.Task[None] | None = None
        self._train_task: asyncio.Task[None] | None = None
        self.trainer: TrainerProcess | None = None
        self._last_train_at = time.time()
        self._source_task: asyncio.Task[str] | None = None

    # -- life cycle --------------------------------------------------------------------------
    async def startup(self) -> None:
        """Resume: fail interrupted runs, serve the stored adapter again, restart if running."""
        failed = await anyio.to_thread.run_sync(fail_interrupted_runs, self.store)
        if failed:
            log.warning("%d training run(s) were interrupted by a restart: recorded failed", failed)
        if self.generation is not None:
            await self.adapters.restore_serving()
        wanted = await anyio.to_thread.run_sync(state.get_value, self.store, "running", None)
        if self.settings.loop_enabled and wanted is not False and self.generation is not None:
            await self.start()

    async def _find_tasks(self) -> str:
        """MBPP or the built-in problems; off the start-up path (the hub may take a while)."""
        self.task_source = await anyio.to_thread.run_sync(
            state.ensure_task_source, self.store, self.settings.loop_mbpp_hub)
        return self.task_source

    async def tasks_ready(self) -> str:
        """Wait until the loop's problems are in the store."""
        if self._source_task is None:
            self._source_task = asyncio.get_running_loop().create_task(self._find_tasks())
        return await asyncio.shield(self._source_task)

    async def close(self) -> None:
        """Stop the loop and any trainer (a killed run is recorded failed at the next start)."""
        for task in (self._task, self._train_task, self._source_task):
            if task is not None:
                task.cancel()
        if self.trainer is not None and self.trainer.process is not None \
                and self.trainer.process.returncode is None:
            self.trainer.process.kill()
        for task in (self._task, self._train_task):
            if task is not None:
                await asyncio.gather(task, return_exceptions=True)
        await self.adapters.wait()

    def _need_generator(self) -> Generation:
        if self.generation is None:
            raise Unavailable("generator", self.generator_problem or "not configured")
        return self.generation

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def start(self) -> None:
        """Start collecting (idempotent); remembered across restarts."""
        self._need_generator()
        await anyio.to_thread.run_sync(lambda: state.set_values(self.store, running=True))
        if not self.running:
            self._task = asyncio.get_running_loop().create_task(self._loop(), name="leti-loop")

    async def stop(self) -> None:
        """Stop collecting after the current round (a training run in progress finishes)."""
        await anyio.to_thread.run_sync(lambda: state.set_values(self.store, running=False))
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self._task = None
        self.phase = "idle"

    # -- the loop ----------------------------------------------------------------------------
    async def _loop(self) -> None:
        generation = self._need_generator()
        await self.tasks_ready()
        while True:
            try:
                self.phase = "collecting"
                problems = pool(await anyio.to_thread.run_sync(state.task_ids, self.store,
                                                               "train"),
                                self.settings.loop_pool_size)
                number = await anyio.to_thread.run_sync(state.get_value, self.store, "round", 0)
                cursor = await anyio.to_thread.run_sync(state.get_value, self.store, "cursor", 0)
                batch, cursor = next_batch(problems, cursor % max(1, len(problems)),
                                           self.settings.loop_problems_per_round)
                # the same round the study runs; training starts in the background when due
                outcome = await run_round(self._context(generation),
                                          loop_plan(self.settings, number + 1, batch),
                                          train=self._should_train, launch=self._launch,
                                          before_gate=self._tasks_before_gate)
                result = outcome.collected
                await anyio.to_thread.run_sync(partial(state.set_values, self.store,
                                                       round=number + 1, cursor=cursor))
                self.last_round = {"round": result.round, "problems": result.problems,
                                   "samples": result.samples, "passed": result.passed,
                                   "truncated": result.truncated, "adapter": result.adapter}
            except asyncio.CancelledError:
                raise
            except (TrainingBusy, NothingToTrain):
                pass
            except Exception as exc:
                log.exception("loop round failed")
                self.last_error = f"{type(exc).__name__}: {exc}"
                self.phase = "paused after an error"
                await asyncio.sleep(ERROR_PAUSE_S)
            await asyncio.sleep(0)

    async def _should_train(self) -> bool:
        if self.training:
            return False
        new = (await anyio.to_thread.run_sync(state.counts, self.store))["new_triples"]
        interval = self.settings.train_interval_s
        due = interval > 0 and time.time() - self._last_train_at >= interval
        return new >= self.settings.train_min_new_triples or (due and new > 0)

    # -- training ----------------------------------------------------------------------------
    @property
    def training(self) -> bool:
        return self._train_task is not None and not self._train_task.done()

    def _context(self, generation: Generation) -> RoundContext:
        return RoundContext(self.store, self.settings, generation, self.adapters)

    async def _tasks_before_gate(self, name: str, adapter_dir: object) -> None:
        await self.tasks_ready()  # the gate's validation problems (POST /v1/train before any round)

    async def train(self, gate: bool = True, steps: int | None = None) -> str:
        """Start a training run on the selected data now; returns its id (it runs in the
        background: the API and the loop go on)."""
        self._need_generator()
        if self.training:
            raise TrainingBusy("a training run is already in progress")
        prepared = await anyio.to_thread.run_sync(prepare_run, self.store, self.settings, steps)
        trainer = TrainerProcess(prepared)
        await self._launch(trainer, train_and_gate(
            self._context(self._need_generator()), trainer, gate=gate,
            before_gate=self._tasks_before_gate))
        return prepared.run_id

    async def _launch(self, trainer: TrainerProcess, work: Awaitable[TrainedRound]) -> None:
        """Run a round's training half in the background (one at a time)."""
        self._last_train_at = time.time()
        self.trainer = trainer
        self._train_task = asyncio.get_running_loop().create_task(
            self._train(work), name=f"leti-train-{trainer.prepared.run_id}")

    async def _train(self, work: Awaitable[TrainedRound]) -> None:
        try:
            trained = await work
        except Exception as exc:
            log.exception("loop step failed")
            self.last_error = f"{type(exc).__name__}: {exc}"
            return
        if trained.error is not None:
            self.last_error = f"training run {trained.run_id} failed: {trained.error}"

    async def _guard(self, step: Awaitable[Any]) -> None:
        try:
            await step
        except Exception as exc:
            log.exception("loop step failed")
            self.last_error = f"{type(exc).__name__}: {exc}"

    # -- status ------------------------------------------------------------------------------
    def _status(self) -> dict[str, Any]:
        values = {k: state.get_value(self.store, k, d) for k, d in
                  (("round", 0), ("cursor", 0), ("running", None))}
        trainer = self.trainer
        return {
            "state": "running" if self.running else "stopped",
            "phase": self.phase if self.running else "idle",
            "round": values["round"], "task_cursor": values["cursor"],
            "task_source": self.task_source, "enabled": bool(self.settings.loop_enabled),
            "serving_adapter": self.adapters.serving_name(),
            "training": None if trainer is None else {
                "id": trainer.prepared.run_id, "running": self.training, "pid": trainer.pid,
                "last_event": trainer.last_event, "error": trainer.error},
            "counts": state.counts(self.store),
            "last_round": self.last_round,
            "last_decisions": state.decisions(self.store),
            "pass_at_1_history": state.pass_history(self.store),
            "settings": {k: getattr(self.settings, k) for k in (
                "loop_problems_per_round", "loop_pool_size", "loop_samples_per_problem",
                "loop_temperature", "train_min_new_triples", "train_interval_s",
                "train_selection", "train_epochs", "train_steps", "train_code_ratio",
                "train_init", "gate_problems", "gate_margin", "gate_temperature")},
            "last_error": self.last_error,
        }

    async def status(self) -> dict[str, Any]:
        """``GET /v1/loop``'s body (docs/LOOP.md)."""
        return await anyio.to_thread.run_sync(self._status)
