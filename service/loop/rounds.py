"""One round of the loop, the one code path ``leti serve`` and ``leti experiment`` both run:

    sample -> execute -> select -> train -> gate -> swap

``collect_round`` samples ``n`` programs for each problem of the round from the serving adapter
(conditioned on the "good" marker; unconditioned while the base model serves), stores them,
and runs them in the sandbox through the same use cases as ``POST /v1/generate`` and
``POST /v1/evaluate``. ``train_and_gate`` runs a prepared training run (its data selected and
exported by ``training.prepare_run``) in the trainer process, records it, and gates the
candidate, which promotes (hot-swaps) or rejects it. ``run_round`` is both in order. The loop
controller starts the training half in the background when its trigger fires and keeps
collecting; the study waits for it and measures the candidate before the gate
(``before_gate``). Problems come from a fixed pool of train problems the rounds walk and
re-sample pass after pass (``pool``, ``next_batch``).
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import anyio.to_thread

from service.core.config import Settings
from service.core.evaluation import Evaluated, EvaluationInput
from service.core.generation import Generation, GenerationInput
from service.loop.adapters import AdapterSwitch
from service.loop.training import (
    PreparedRun,
    TrainerProcess,
    TrainOptions,
    finish_run,
    next_adapter_name,
    prepare_run,
)
from service.store.db import Store
from service.store.triples import TRUNCATED

log = logging.getLogger(__name__)
BeforeGate = Callable[[str, Path], Awaitable[None]]


def pool(train_ids: list[str], size: int) -> list[str]:
    """The fixed pool of train problems the rounds re-sample: the first ``size`` (0: all)."""
    return list(train_ids if size <= 0 else train_ids[:size])


def next_batch(problem_ids: list[str], cursor: int, size: int) -> tuple[list[str], int]:
    """``size`` problems from ``cursor``, wrapping around; and the cursor after them."""
    if not problem_ids:
        return [], cursor
    size = min(size, len(problem_ids))
    batch = [problem_ids[(cursor + i) % len(problem_ids)] for i in range(size)]
    return batch, (cursor + size) % len(problem_ids)


@dataclass(frozen=True)
class RoundPlan:
    """What one round samples: its problems, ``n`` programs each, how, and the seed."""

    number: int
    problems: list[str]
    n: int
    temperature: float
    max_new_tokens: int
    seed: int  # a generate call starting at problem ``i`` samples with seed + i
    repetition_penalty: float = 1.0  # SamplingParams.repetition_penalty (1: off)


def loop_plan(settings: Settings, number: int, problems: list[str]) -> RoundPlan:
    """The loop's round: its sampling settings, seeded by the round number."""
    return RoundPlan(number, problems, settings.loop_samples_per_problem,
                     settings.loop_temperature, settings.loop_max_new_tokens,
                     seed=number * 10_000,
                     repetition_penalty=settings.loop_repetition_penalty)


@dataclass(frozen=True)
class RoundResult:
    round: int
    problems: list[str]
    samples: int
    passed: int
    adapter: str | None
    statuses: dict[str, int] = field(default_factory=dict)
    error_types: dict[str, int] = field(default_factory=dict)
    truncated: int = 0  # programs cut at the token limit
    timings_s: dict[str, float] = field(default_factory=dict)

    @property
    def pass_rate(self) -> float:
        return self.passed / self.samples if self.samples else 0.0


async def collect_round(generation: Generation, plan: RoundPlan) -> RoundResult:
    """Sample and store every problem's programs, then run them all in the sandbox (their
    executions and triples stored as ``POST /v1/evaluate`` stores them)."""
    began = time.perf_counter()
    sample_ids: list[str] = []
    finish: Counter[str] = Counter()
    adapter: str | None = None
    per_call = generation.generator.prompts_per_call(plan.n)
    for start in range(0, len(plan.problems), per_call):
        chunk = plan.problems[start:start + per_call]
        results = await generation.generate_batch([GenerationInput(
            task_id=task_id, n=plan.n, temperature=plan.temperature,
            max_new_tokens=plan.max_new_tokens, seed=plan.seed + start,
            repetition_penalty=plan.repetition_penalty) for task_id in chunk])
        for result in results:
            adapter = result.adapter
            for generated in result.samples:
                sample_ids.append(generated.sample.id)
                finish[generated.sample.finish_reason or "none"] += 1
    sampled = time.perf_counter()
    # in requests within the API's per-request cap (LETI_MAX_PROGRAMS), which a round of
    # problems x n samples may exceed
    cap = generation.evaluator.settings.max_programs
    evaluated: list[Evaluated] = []
    for start in range(0, len(sample_ids), cap):
        evaluated += await generation.evaluator.evaluate(
            EvaluationInput(sample_ids=sample_ids[start:start + cap]))
    done = time.perf_counter()
    statuses = Counter(e.outcome.status.value for e in evaluated)
    errors = Counter(e.outcome.error_type or "none" for e in evaluated if not e.outcome.passed)
    result = RoundResult(plan.number, list(plan.problems), len(evaluated),
                         statuses.get("passed", 0), adapter, dict(statuses), dict(errors),
                         finish.get(TRUNCATED, 0),
                         {"sampling": round(sampled - began, 3),
                          "execution": round(done - sampled, 3)})
    log.info("round %d: %d programs, %d passed, %d cut at the token limit (adapter %s)",
             plan.number, result.samples, result.passed, result.truncated, adapter or "base")
    return result


@dataclass
class RoundContext:
    """What a round runs through: the service's store, settings, generation and adapters."""

    store: Store
    settings: Settings
    generation: Generation
    switch: AdapterSwitch


@dataclass
class TrainedRound:
    """A training run's end: the candidate (or the error) and the gate's decision."""

    run_id: str
    candidate: str | None
    adapter_dir: Path | None
    error: str | None
    training: dict[str, Any]
    data: dict[str, Any]
    decision: dict[str, Any] | None = None
    timings_s: dict[str, float] = field(default_factory=dict)


def training_summary(output_dir: Path) -> dict[str, Any]:
    """The headline of a finished run's metrics.json: steps, loss, tokens, what it computed in."""
    metrics_file = output_dir / "metrics.json"
    if not metrics_file.is_file():
        return {}
    metrics = json.loads(metrics_file.read_text(encoding="utf-8"))
    loss = (metrics.get("loss") or {}).get("feedback") or {}
    return {"steps": metrics.get("steps"), "precision": metrics.get("precision"),
            "feedback_steps": loss.get("steps"),
            "loss_first": loss.get("first"), "loss_last": loss.get("last"),
            "tokens": metrics.get("tokens"), "tokens_per_s": metrics.get("tokens_per_s"),
            "examples": (metrics.get("data") or {}).get("examples")}


def _run_data(store: Store, run_id: str) -> dict[str, Any]:
    from service.store.lineage import get_training_run

    with store.read() as session:
        run = get_training_run(session, run_id)
        return dict((run.config or {}).get("data") or {}) if run is not None else {}


async def train_and_gate(ctx: RoundContext, trainer: TrainerProcess, *, gate: bool = True,
                         before_gate: BeforeGate | None = None) -> TrainedRound:
    """Run the prepared training run, record it (a failure leaves the serving adapter as it
    is), then gate the candidate: promoted it serves, rejected it is unloaded and recorded."""
    prepared = trainer.prepared
    began = time.perf_counter()
    try:
        adapter_dir = await trainer.run()
    except Exception as exc:  # noqa: BLE001 - the trainer could not even start
        adapter_dir, trainer.error = None, f"{type(exc).__name__}: {exc}"
    generator = ctx.generation.generator
    name = await anyio.to_thread.run_sync(next_adapter_name, ctx.store, generator.alias,
                                          generator.version)
    await anyio.to_thread.run_sync(lambda: finish_run(
        ctx.store, prepared.run_id, adapter_name=name, adapter_dir=adapter_dir,
        base_model=ctx.settings.generator_model or "default",
        parent=prepared.parent_adapter, error=trainer.error))
    trained = time.perf_counter()
    data = await anyio.to_thread.run_sync(_run_data, ctx.store, prepared.run_id)
    outcome = TrainedRound(prepared.run_id, None if trainer.error else name, adapter_dir,
                           trainer.error, training_summary(prepared.output_dir), data,
                           timings_s={"training": round(trained - began, 3)})
    if trainer.error is not None or adapter_dir is None:
        log.warning("training run %s failed: %s", prepared.run_id, trainer.error)
        return outcome
    if before_gate is not None:
        await before_gate(name, adapter_dir)
    if gate:
        gated = time.perf_counter()
        outcome.decision = await ctx.switch.gate(name)
        outcome.timings_s["gate"] = round(time.perf_counter() - gated, 3)
    return outcome


@dataclass
class RoundOutcome:
    collected: RoundResult
    prepared: PreparedRun | None = None
    trained: TrainedRound | None = None  # None: not trained, or training in the background


Launch = Callable[[TrainerProcess, Awaitable[TrainedRound]], Awaitable[None]]


async def run_round(ctx: RoundContext, plan: RoundPlan, *,
                    train: bool | Callable[[], Awaitable[bool]] = True,
                    steps: int | None = None, options: TrainOptions | None = None,
                    launch: Launch | None = None,
                    before_gate: BeforeGate | None = None) -> RoundOutcome:
    """Collect the round; then, when ``train`` says so, select and export the data, train,
    gate and swap. With ``launch`` the training half is handed over to run in the background
    (the loop goes on collecting); without it the round waits for the decision."""
    collected = await collect_round(ctx.generation, plan)
    wanted = train if isinstance(train, bool) else await train()
    if not wanted:
        return RoundOutcome(collected)
    prepared = await anyio.to_thread.run_sync(
        partial(prepare_run, ctx.store, ctx.settings, steps, options))
    trainer = TrainerProcess(prepared)
    work = train_and_gate(ctx, trainer, before_gate=before_gate)
    if launch is not None:
        await launch(trainer, work)
        return RoundOutcome(collected, prepared)
    return RoundOutcome(collected, prepared, await work)
