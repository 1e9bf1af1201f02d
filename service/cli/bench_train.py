"""``leti bench train``: training tokens/s and peak memory, against a bare PyTorch loop.

Each loop runs in its own process (``python -m trainer.benchmark``) so its peak memory is its own.
The data are MBPP-shaped triples: every reference solution as a good sample and a broken copy
(``return None``) as a bad one with test-failure feedback, so sequence lengths match real runs.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from sandbox.tasks import TaskDataError, load_mbpp

LOOPS = ("bare", "trainer", "trainer+code")


def write_bench_triples(path: Path, mbpp_path: Path | None, limit: int) -> int:
    """Good and bad triples from the first ``limit`` MBPP tasks; returns how many were written."""
    rows = []
    for task in load_mbpp(mbpp_path)[:limit]:
        broken = "\n".join(line.split("return")[0] + "return None" if "return" in line else line
                           for line in (task.reference or "").splitlines())
        common = {"task_id": task.task_id, "kind": "mbpp", "instruction": task.instruction,
                  "tests": list(task.tests), "entry_point": None, "source": "sandbox",
                  "adapter": None, "reference": task.reference}
        rows.append({**common, "sample_id": f"{task.task_id}#good", "program": task.reference,
                     "status": "passed", "reward": "good", "score": 1.0,
                     "feedback": f"All {len(task.tests)} tests passed."})
        rows.append({**common, "sample_id": f"{task.task_id}#bad", "program": broken,
                     "status": "failed", "reward": "bad", "score": 0.0,
                     "feedback": f"Test 1 failed: {task.tests[0]}\nExpected True, got None."})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return len(rows)


def train(
    steps: Annotated[int, typer.Option(help="optimiser steps per loop (1st: warm-up)")] = 6,
    batch_size: Annotated[int, typer.Option(help="sequences per step")] = 4,
    tasks: Annotated[int, typer.Option(help="MBPP tasks to build triples from")] = 64,
    base_model: Annotated[str, typer.Option(help="'default' or a model directory")] = "default",
    device: Annotated[str, typer.Option(help="cpu or cuda")] = "cpu",
    loops: Annotated[str, typer.Option(help=f"comma-separated, of {', '.join(LOOPS)}")] =
        ",".join(LOOPS),
    mbpp_path: Annotated[Path | None, typer.Option(help="mbpp.jsonl (default: LETI_MBPP_PATH)")]
        = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="also write the figures here")]
        = None,
) -> None:
    """Measure LoRA training throughput of the default model on this machine."""
    console = Console()
    with tempfile.TemporaryDirectory(prefix="leti-bench-train-") as tmp:
        data = Path(tmp) / "triples.jsonl"
        try:
            n = write_bench_triples(data, mbpp_path, tasks)
        except TaskDataError as exc:
            console.print(f"[red]error:[/red] {exc}")
            raise typer.Exit(2) from None
        results = []
        for loop in [x.strip() for x in loops.split(",") if x.strip()]:
            console.print(f"{loop}: {steps} steps of {batch_size} sequences ({n} triples) ...")
            args = {"data": str(data), "out": str(Path(tmp) / loop), "steps": steps,
                    "batch_size": batch_size, "base_model": base_model, "device": device}
            proc = subprocess.run([sys.executable, "-m", "trainer.benchmark", loop,
                                   json.dumps(args)], capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                console.print(f"[red]error:[/red] {loop} failed:\n{proc.stderr[-2000:]}")
                raise typer.Exit(1)
            results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    anchor = next((r for r in results if r["loop"] == "bare"), None)
    table = Table(title=f"LoRA training throughput ({device}, {platform.node()})")
    for column in ("loop", "steps", "tokens", "tokens/s", "tokens/CPU-s", "s/step",
                   "peak RSS MiB", "peak GPU MiB", "vs bare (CPU-s)"):
        table.add_column(column, justify="left" if column == "loop" else "right")
    for r in results:
        ratio = f"{r['tokens_per_cpu_s'] / anchor['tokens_per_cpu_s']:.2f}x" if anchor else "-"
        table.add_row(r["loop"], str(r["steps"]), str(r["tokens"]), f"{r['tokens_per_s']:.1f}",
                      f"{r['tokens_per_cpu_s']:.1f}", f"{r['s_per_step']:.2f}",
                      f"{r['peak_rss_mib']:.0f}",
                      "-" if r["peak_gpu_mib"] is None else f"{r['peak_gpu_mib']:.0f}", ratio)
    console.print(table)
    if json_out:
        json_out.write_text(json.dumps({
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
            "steps": steps, "batch_size": batch_size, "results": results}, indent=2))
