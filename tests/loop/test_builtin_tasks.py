"""The built-in problems are sound: every reference passes its own tests in the real sandbox,
and a wrong program fails them (so they can tell good programs from bad)."""

from __future__ import annotations

from sandbox import RunnerPool
from service.loop.builtin_tasks import builtin_split, builtin_tasks


def test_thirty_problems_twenty_train_ten_validation() -> None:
    tasks = builtin_tasks()
    assert len(tasks) == 30 and len({t.task_id for t in tasks}) == 30
    splits = [builtin_split(t) for t in tasks]
    assert splits.count("train") == 20 and splits.count("validation") == 10
    assert all(t.kind == "mbpp" and len(t.tests) == 3 and t.reference for t in tasks)


def test_every_reference_passes_in_the_sandbox(local_sandbox: RunnerPool) -> None:
    tasks = builtin_tasks()
    outcomes = [local_sandbox.run(t.job_for(t.reference or "")) for t in tasks]
    failed = [(t.task_id, o.status.value) for t, o in zip(tasks, outcomes) if not o.passed]
    assert failed == []


def test_a_wrong_program_fails_every_problem(local_sandbox: RunnerPool) -> None:
    tasks = builtin_tasks()
    wrong = [t.job_for(t.reference.replace("return", "return None and") if t.reference else "")
             for t in tasks]
    outcomes = [local_sandbox.run(job) for job in wrong]
    assert not any(o.passed for o in outcomes)
