"""The "references" ablation's data: a ceiling for what a round's data could teach.

A round trains on the few programs sampling got right. This builds the data a round would have
had if sampling had found a correct program for every problem: each problem's reference
solution, run through the sandbox like any sampled program (the same job, the same feedback
rendering), kept only if it passes, and written in the trainer's contract format. Nothing is
stored: the references never become triples that later rounds would train on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio.to_thread

from sandbox import render_feedback
from service.core.evaluation import SandboxExecutor
from service.core.programs import executed_program, prompt_tests, task_job
from service.store.db import Store
from service.store.export import export_records
from service.store.models import TaskRow
from service.store.tasks import get_task


@dataclass(frozen=True)
class ReferenceData:
    """What the ceiling trains on: ``kept`` passing references of ``problems`` asked for."""

    path: Path
    problems: int
    kept: int
    failed: dict[str, str]  # task id -> sandbox status of a reference that did not pass


def reference_program(task: TaskRow) -> str:
    """The task's reference as a program: MBPP's have Windows line endings, which a sampled
    program never has."""
    return executed_program(task, (task.reference or "").replace("\r\n", "\n"))


def _record(task: TaskRow, program: str, status: str, feedback: str) -> dict[str, Any]:
    """One passing reference in the trainer's contract format (``store.triples``)."""
    return {"sample_id": f"reference-{task.id}", "task_id": task.id, "kind": task.kind,
            "instruction": task.instruction, "tests": prompt_tests(task),
            "entry_point": task.entry_point, "program": program, "status": status,
            "feedback": feedback, "reward": "good", "score": 1.0, "source": "reference",
            "adapter": None, "reference": task.reference, "finish_reason": "stop"}


async def reference_data(store: Store, sandbox: SandboxExecutor, task_ids: Sequence[str],
                         path: Path, *, timeout: float, memory_mb: int) -> ReferenceData:
    """Run each task's reference in the sandbox and write the passing ones to ``path``."""

    def load() -> list[TaskRow]:
        with store.read() as session:
            rows = [get_task(session, task_id) for task_id in task_ids]
        return [row for row in rows if row is not None and row.reference]

    tasks = await anyio.to_thread.run_sync(load)
    programs = [reference_program(task) for task in tasks]
    outcomes = await sandbox.run_many([
        task_job(task, program, timeout=timeout, memory_mb=memory_mb, id=task.id)
        for task, program in zip(tasks, programs, strict=True)])
    records, failed = [], {}
    for task, program, outcome in zip(tasks, programs, outcomes, strict=True):
        if outcome.passed:
            records.append(_record(task, program, outcome.status.value, render_feedback(outcome)))
        else:
            failed[task.id] = outcome.status.value
    kept = await anyio.to_thread.run_sync(export_records, path, records)
    return ReferenceData(path, len(task_ids), kept, failed)
