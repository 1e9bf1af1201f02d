"""Every reference solution passes its own tests in the sandbox (both backends).

This is the check that the runner grades like the benchmarks do: if a reference fails, either the
runner or the dataset is wrong, and the failure message shows the feedback to decide which.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from sandbox import RunnerPool, render_feedback
from sandbox.tasks import Task, load_humaneval, load_mbpp

# mbpp/123 (amicable numbers below 10,000) needs about 4 s of CPU: well under the limit when the
# machine is busy, so a slow run is not mistaken for a wrong one.
REFERENCE_TIMEOUT_S = 30.0


def _failures(sandbox: RunnerPool, tasks: list[Task]) -> tuple[list[str], float]:
    jobs = [t.job_for(t.reference or "", timeout=REFERENCE_TIMEOUT_S) for t in tasks]
    start = time.monotonic()
    outcomes = asyncio.run(sandbox.run_many(jobs))
    elapsed = time.monotonic() - start
    assert [o.id for o in outcomes] == [t.task_id for t in tasks]
    failures = [f"{o.id}: {o.status.value}\n{render_feedback(o)}" for o in outcomes
                if not o.passed]
    return failures, elapsed


@pytest.mark.slow
def test_all_mbpp_references_pass(sandbox: RunnerPool, mbpp_path: Path) -> None:
    tasks = load_mbpp(mbpp_path)
    assert len(tasks) == 974
    failures, elapsed = _failures(sandbox, tasks)
    print(f"MBPP: {len(tasks) - len(failures)}/{len(tasks)} references passed in {elapsed:.1f} s")
    assert not failures, "\n\n".join(failures)


@pytest.mark.slow
def test_all_humaneval_canonical_solutions_pass(sandbox: RunnerPool) -> None:
    tasks = load_humaneval()
    assert len(tasks) == 164
    failures, elapsed = _failures(sandbox, tasks)
    print(f"HumanEval: {len(tasks) - len(failures)}/{len(tasks)} passed in {elapsed:.1f} s")
    assert not failures, "\n\n".join(failures)
