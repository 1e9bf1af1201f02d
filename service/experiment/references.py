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

from sandbox import Outcome
from service.core.evaluation import SandboxExecutor, execution_record
from service.core.programs import executed_program, task_job
from service.store.db import Store
from service.store.export import export_records
from service.store.models import SampleRow, TaskRow, TripleRow
from service.store.tasks import get_task
from service.store.triples import contract_record


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


def _record(task: TaskRow, program: str, outcome: Outcome) -> dict[str, Any]:
    """One reference in the trainer's contract format, through the rules every stored triple
    follows: the reward and feedback of ``execution_record``, the shape of ``contract_record``
    (unsaved rows: nothing is stored)."""
    execution = execution_record(outcome, "reference")
    triple = TripleRow(status=execution.status, feedback=execution.feedback,
                       reward=execution.reward, score=execution.score, source="reference")
    sample = SampleRow(id=f"reference-{task.id}", task_id=task.id, program=program,
                       adapter=None, finish_reason="stop")
    return contract_record(triple, sample, task)


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
            records.append(_record(task, program, outcome))
        else:
            failed[task.id] = outcome.status.value
    kept = await anyio.to_thread.run_sync(export_records, path, records)
    return ReferenceData(path, len(task_ids), kept, failed)
