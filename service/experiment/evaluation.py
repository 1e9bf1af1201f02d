"""One evaluation of the study: pass@k of a model on a benchmark's first problems, sampled and
scored by the benchmark jobs' own sampler and scorer, with its programs and their feedback
written beside results.json."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio.to_thread

from service.benchmarks.jobs import BenchmarkSpec, load_bench_tasks, sample_programs
from service.benchmarks.scoring import HUMAN_EVAL_TIMEOUT_S, overall_pass_at_k, score_samples
from service.core.components import Services
from service.core.generation import BASE, Generation
from service.experiment.config import ExperimentConfig
from service.experiment.progress import StudyError
from service.experiment.results import EvaluationRecord, TaskRecord, write_atomic

log = logging.getLogger(__name__)


@dataclass
class Timer:
    """Seconds spent per phase name, summed."""

    seconds: dict[str, float] = field(default_factory=dict)

    def add(self, name: str, since: float) -> float:
        now = time.perf_counter()
        self.seconds[name] = round(self.seconds.get(name, 0.0) + now - since, 3)
        return now


@dataclass
class Evaluator:
    """Evaluates models for one study: its config, services and output directory."""

    config: ExperimentConfig
    services: Services
    generation: Generation
    out_dir: Path

    async def evaluate(self, arm: str, round_number: int, benchmark: str, adapter: str | None,
                       feedback_steps: int | None, marker: str | None = None
                       ) -> EvaluationRecord:
        """pass@k of ``adapter`` (None: the base model) on the benchmark's first problems,
        keyed ``<arm>[-rN]/<benchmark>``; ``marker="bad"`` samples on the "bad" reward marker
        instead of "good" (LETI's check that the marker was learned)."""
        ev = self.config.evaluation
        limit = (self.config.data.test_problems if benchmark == "mbpp"
                 else self.config.data.humaneval_problems)
        split = "test" if benchmark == "mbpp" else None
        tasks = await anyio.to_thread.run_sync(load_bench_tasks, self.services.store, benchmark,
                                               split, limit)
        if not tasks:
            raise StudyError(f"no {benchmark} tasks in the study's store")
        timeout = HUMAN_EVAL_TIMEOUT_S if benchmark == "humaneval" else \
            self.config.sandbox.timeout_s
        spec = BenchmarkSpec(benchmark, adapter=adapter or BASE, n=ev.n,
                             temperature=ev.temperature, ks=ev.ks, limit=limit, split=split,
                             max_new_tokens=ev.max_new_tokens, seed=ev.seed, timeout_s=timeout)
        timer = Timer()
        per_task: dict[str, TaskRecord] = {}
        programs: list[dict[str, Any]] = []
        per_call = self.generation.generator.prompts_per_call(ev.n)
        for start in range(0, len(tasks), per_call):
            chunk = tasks[start:start + per_call]
            began = time.perf_counter()
            samples, _ = await sample_programs(spec, self.generation, chunk, marker or "good")
            began = timer.add("sampling", began)
            scored = await score_samples(self.services.sandbox, {b.id: b for _, b in chunk},
                                         samples, ev.ks, timeout,
                                         self.services.settings.sandbox_memory_mb)
            timer.add("execution", began)
            for task in scored.tasks:
                per_task[task.task_id] = TaskRecord(
                    passed=[r["passed"] for r in task.samples],
                    statuses=[r["status"] for r in task.samples],
                    error_types=[r.get("error_type") for r in task.samples])
                programs += [{"task_id": task.task_id, "program": r["program"],
                              "status": r["status"], "feedback": r["feedback"]}
                             for r in task.samples]
            log.info("%s %s: %d/%d problems", arm, benchmark, len(per_task), len(tasks))
        flags = {task_id: v.passed for task_id, v in per_task.items()}
        key = f"{arm}-r{round_number}/{benchmark}" if round_number else f"{arm}/{benchmark}"
        record = EvaluationRecord(
            key=key, arm=arm, round=round_number, marker=marker, feedback_steps=feedback_steps,
            benchmark=benchmark, split=split, adapter=adapter, n=ev.n,
            temperature=ev.temperature, seed=ev.seed, max_new_tokens=ev.max_new_tokens,
            tasks=per_task, pass_at_k=overall_pass_at_k(flags, ev.ks),
            timings_s=timer.seconds, wall_s=round(sum(timer.seconds.values()), 1),
            programs_file=self._save_programs(key, programs))
        log.info("%s: %s", key, record.pass_at_k)
        return record

    def _save_programs(self, key: str, programs: list[dict[str, Any]]) -> str:
        """Write an evaluation's programs with their status and feedback to
        ``programs/<key>.jsonl`` (kept out of results.json): what a reader looks at to see why
        a figure moved. Returns the path relative to the results directory."""
        relative = Path("programs") / (key.replace("/", "--") + ".jsonl")
        (self.out_dir / relative.parent).mkdir(exist_ok=True)
        write_atomic(self.out_dir / relative, "".join(json.dumps(p) + "\n" for p in programs))
        return str(relative)
