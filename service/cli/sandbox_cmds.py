"""``leti sandbox check`` and ``leti demo``: run jobs from JSON lines through a sandbox backend."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

from sandbox import Job, JobError, Outcome, SandboxError, make_sandbox, render_feedback

app = typer.Typer(no_args_is_help=True, help="Run untrusted programs against tests.")
err = Console(stderr=True)

BackendOpt = Annotated[str, typer.Option("--backend", help="local (bubblewrap) or docker")]
WorkersOpt = Annotated[int | None, typer.Option("--workers", help="warm runners (default: cores)")]


def parse_job_line(number: int, line: str) -> Job:
    """One line of the jobs file as a Job; JobError says what is wrong with it."""
    try:
        data = json.loads(line)
    except json.JSONDecodeError as exc:
        raise JobError(f"line {number}: invalid JSON ({exc.msg} at column {exc.colno})") from None
    try:
        job = Job.from_dict(data)
    except JobError as exc:
        raise JobError(f"line {number}: {exc}") from None
    if job.id is None:  # outcomes must be matchable to their line
        job = dataclasses.replace(job, id=str(number))
    return job


def outcome_record(outcome: Outcome) -> dict[str, Any]:
    """The JSON line written for one outcome: the outcome plus its rendered feedback."""
    record = outcome.to_dict()
    record.pop("extra", None)
    record["feedback"] = render_feedback(outcome)
    return record


async def _run_lines(lines: list[str], backend: str, workers: int | None) -> None:
    parsed: list[Job | JobError] = []
    for number, line in enumerate(lines, start=1):
        try:
            parsed.append(parse_job_line(number, line))
        except JobError as exc:
            parsed.append(exc)
    jobs = [p for p in parsed if isinstance(p, Job)]
    with make_sandbox(backend, workers=workers) as sandbox, Progress(  # type: ignore[call-overload]
            "[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), console=err) as progress:
        bar = progress.add_task("executing", total=len(jobs))
        outcomes = iter(await sandbox.run_many(jobs, on_done=lambda _: progress.advance(bar)))
    for item in parsed:  # input order; a bad line gets its error in place and stops nothing
        record = {"id": None, "error": str(item)} if isinstance(item, JobError) \
            else outcome_record(next(outcomes))
        sys.stdout.write(json.dumps(record) + "\n")


@app.command("check")
def check(
    jobs_file: Annotated[Path, typer.Argument(help="JSON lines: id, program, tests, setup, timeout",
                                              exists=True, dir_okay=False, readable=True)],
    backend: BackendOpt = "local",
    workers: WorkersOpt = None,
) -> None:
    """Run every job in JOBS_FILE; print one JSON outcome per line (progress on stderr)."""
    lines = [line for line in jobs_file.read_text().splitlines() if line.strip()]
    try:
        asyncio.run(_run_lines(lines, backend, workers))
    except (SandboxError, ValueError) as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None


DEMO_PROGRAMS = {
    "correct": "def add(a, b):\n    return a + b\n",
    "wrong answer": "def add(a, b):\n    return a - b\n",
    "exception": "def add(a, b):\n    return a + c\n",
    "syntax error": "def add(a, b)\n    return a + b\n",
    "infinite loop": "def add(a, b):\n    while True:\n        pass\n",
    "early exit": "import sys\nsys.exit(0)\n",
}


def demo(backend: BackendOpt = "local") -> None:
    """Run a few programs (one right, several wrong) and show the feedback LETI learns from."""
    tests = ("assert add(1, 2) == 3", "assert add(-1, 1) == 0")
    jobs = [Job(program, tests, timeout=2.0, id=name) for name, program in DEMO_PROGRAMS.items()]
    try:
        with make_sandbox(backend) as sandbox:  # type: ignore[call-overload]
            outcomes = asyncio.run(sandbox.run_many(jobs))
    except SandboxError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    out = Console()
    for job, outcome in zip(jobs, outcomes):
        out.rule(f"{job.id}: [bold]{outcome.status.value}[/bold] ({outcome.duration_ms:.0f} ms)")
        out.print(job.program.rstrip(), style="dim", markup=False, highlight=False)
        out.print(render_feedback(outcome), markup=False, highlight=False)
