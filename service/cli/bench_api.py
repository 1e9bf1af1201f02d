"""``leti bench api``: concurrent evaluate requests against a real server (one program each, and
batches), with two anchors (the same client on ``/healthz``, the sandbox alone); requests and
executions per second, p50/p99 latency, errors (none)."""

from __future__ import annotations

import json
import os
import platform
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table


def api(
    concurrency: Annotated[int, typer.Option(help="requests in flight at once")] = 64,
    requests: Annotated[int, typer.Option(help="evaluate requests in all")] = 512,
    workers: Annotated[int, typer.Option(help="sandbox workers (0: CPU cores)")] = 0,
    batch: Annotated[int, typer.Option(help="programs per request in the batch harness")] = 32,
    mbpp_path: Annotated[Path | None,
                         typer.Option(help="mbpp.jsonl (default: LETI_MBPP_PATH)")] = None,
    json_out: Annotated[Path | None,
                        typer.Option("--json", help="also write the figures here")] = None,
) -> None:
    """Load `leti serve` on 127.0.0.1 with concurrent POST /v1/evaluate (MBPP references)."""
    from sandbox.tasks import TaskDataError, load_mbpp
    from service.speed.api_load import batch_programs, bench_api, bench_sandbox_direct

    console = Console()
    path = mbpp_path or (Path(os.environ["LETI_MBPP_PATH"]) if os.environ.get("LETI_MBPP_PATH")
                         else None)
    if path is None:
        console.print("[red]error:[/red] give --mbpp-path or set LETI_MBPP_PATH")
        raise typer.Exit(2)
    try:
        tasks = load_mbpp(path)
    except TaskDataError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    workers = workers or os.cpu_count() or 2
    console.print(f"{requests} evaluate requests, {concurrency} at a time, {workers} sandbox "
                  "workers ...")
    result, batches, ceiling, failures = bench_api(tasks, path, requests, concurrency, workers,
                                                   batch)
    console.print("the same programs through the sandbox pool directly (run_many) ...")
    anchor = bench_sandbox_direct(batch_programs(tasks, requests, batch), workers)

    table = Table(title=f"REST API load ({platform.node()}, {os.cpu_count()} CPUs)")
    for column in ("harness", "requests", "errors", "req/s", "exec/s", "p50 ms", "p99 ms",
                   "exec/s vs sandbox"):
        table.add_column(column, justify="left" if column == "harness" else "right")
    for r in (result, batches, ceiling, anchor):
        table.add_row(r.name, str(r.requests), str(r.errors), f"{r.per_second:.1f}",
                      f"{r.executions_per_second:.1f}", f"{r.p50_ms:.1f}", f"{r.p99_ms:.1f}",
                      f"{r.executions_per_second / anchor.executions_per_second:.2f}x"
                      if r.executions else "-")
    console.print(table)
    if json_out:
        json_out.write_text(json.dumps({
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
            "concurrency": concurrency, "workers": workers, "batch": batch,
            "results": [result.as_dict(), batches.as_dict(), ceiling.as_dict(), anchor.as_dict()],
        }, indent=2))
    if failures:
        console.print(f"[red]{len(failures)} requests failed:[/red]")
        for failure in failures[:10]:
            console.print(f"  {failure}")
        raise typer.Exit(1)
