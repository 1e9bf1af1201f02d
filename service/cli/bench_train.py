"""``leti bench train``: training tokens/s and peak memory, against a bare PyTorch loop, the
previous (padded, float32) training path and the packed float32 one, measured in the same run.

Each loop runs in its own process (``python -m trainer.speed``) so its peak memory is its own;
with ``--repeats N`` the loops alternate N times (a shared machine's load drifts between runs) and
the ratio to the previous path is taken between medians.
The data are MBPP-shaped triples: every reference solution as a good sample and a broken copy
(``return None``) as a bad one with test-failure feedback, so sequence lengths match real runs.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
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

LOOPS = ("bare", "previous", "trainer-fp32", "trainer", "previous+code", "trainer+code")
DEFAULT_LOOPS = ("bare", "previous", "trainer-fp32", "trainer", "trainer+code")
# each faster loop against the loop it replaces: the previous path (padded, float32), and the
# packed float32 path (the default before bf16 on CPUs that multiply it natively)
PAIRS = (("trainer", "previous"), ("trainer", "trainer-fp32"), ("trainer+code", "previous+code"))


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
        ",".join(DEFAULT_LOOPS),
    repeats: Annotated[int, typer.Option(min=1, help="run the loops this many times, "
                                         "alternating; ratios use the medians")] = 1,
    mbpp_path: Annotated[Path | None, typer.Option(help="mbpp.jsonl (default: LETI_MBPP_PATH)")]
        = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="also write the figures here")]
        = None,
) -> None:
    """Measure LoRA training throughput of the default model on this machine."""
    console = Console()
    names = [x.strip() for x in loops.split(",") if x.strip()]
    unknown = [x for x in names if x not in LOOPS]
    if unknown:
        console.print(f"[red]error:[/red] unknown loop(s) {', '.join(unknown)}: "
                      f"choose from {', '.join(LOOPS)}")
        raise typer.Exit(2)
    with tempfile.TemporaryDirectory(prefix="leti-bench-train-") as tmp:
        data = Path(tmp) / "triples.jsonl"
        try:
            n = write_bench_triples(data, mbpp_path, tasks)
        except TaskDataError as exc:
            console.print(f"[red]error:[/red] {exc}")
            raise typer.Exit(2) from None
        results = []
        for run in range(repeats):
            for loop in names:
                console.print(f"{loop}: {steps} steps of {batch_size} sequences ({n} triples)"
                              + (f", run {run + 1}/{repeats}" if repeats > 1 else "") + " ...")
                results.append(_measure(loop, {
                    "data": str(data), "out": str(Path(tmp) / f"{loop}-{run}"), "steps": steps,
                    "batch_size": batch_size, "base_model": base_model, "device": device},
                    console))
    ratios = speedups(results)
    _print_table(console, results, ratios, device)
    if json_out:
        json_out.write_text(json.dumps({
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                        "node": platform.node(), "native_bf16": _native_bf16(device)},
            "steps": steps, "batch_size": batch_size, "tasks": tasks, "repeats": repeats,
            "results": results, "speedup_vs_previous": ratios}, indent=2))


def _native_bf16(device: str) -> bool:
    from trainer.base_model import native_bf16  # imports torch: only once the figures exist

    return native_bf16(device)


def _measure(loop: str, args: dict, console: Console) -> dict:
    """One loop in a fresh process; its last stdout line is the result."""
    proc = subprocess.run([sys.executable, "-m", "trainer.speed", loop, json.dumps(args)],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        console.print(f"[red]error:[/red] {loop} failed:\n{proc.stderr[-2000:]}")
        raise typer.Exit(1)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def speedups(results: list[dict]) -> dict[str, dict[str, float]]:
    """Each faster loop against the one it replaces (``PAIRS``), keyed ``"trainer vs previous"``:
    the ratio of the median tokens/s and of the median tokens/CPU-s over the repeats."""
    def median(loop: str, key: str) -> float | None:
        values = [r[key] for r in results if r["loop"] == loop]
        return statistics.median(values) if values else None

    out: dict[str, dict[str, float]] = {}
    for fast, previous in PAIRS:
        pair = {}
        for key in ("tokens_per_s", "tokens_per_cpu_s"):
            a, b = median(fast, key), median(previous, key)
            if a is not None and b:
                pair[key] = round(a / b, 2)
        if pair:
            out[f"{fast} vs {previous}"] = pair
    return out


def _print_table(console: Console, results: list[dict], ratios: dict[str, dict[str, float]],
                 device: str) -> None:
    anchor = next((r for r in results if r["loop"] == "bare"), None)
    table = Table(title=f"LoRA training throughput ({device}, {platform.node()})")
    for column in ("loop", "precision", "steps", "tokens", "tokens/s", "tokens/CPU-s", "s/step",
                   "peak RSS MiB", "peak GPU MiB", "vs bare (CPU-s)"):
        table.add_column(column, justify="left" if column == "loop" else "right")
    for r in results:
        ratio = f"{r['tokens_per_cpu_s'] / anchor['tokens_per_cpu_s']:.2f}x" if anchor else "-"
        table.add_row(r["loop"], r.get("precision", ""), str(r["steps"]), str(r["tokens"]), f"{r['tokens_per_s']:.1f}",
                      f"{r['tokens_per_cpu_s']:.1f}", f"{r['s_per_step']:.2f}",
                      f"{r['peak_rss_mib']:.0f}",
                      "-" if r["peak_gpu_mib"] is None else f"{r['peak_gpu_mib']:.0f}", ratio)
    console.print(table)
    for pair_name, pair in ratios.items():
        console.print(f"{pair_name} (same run, medians): "
                      f"{pair.get('tokens_per_s', float('nan')):.2f}x tokens/s, "
                      f"{pair.get('tokens_per_cpu_s', float('nan')):.2f}x tokens/CPU-s")
    if not ratios:
        console.print("no speed-up measured: add 'previous' (and 'trainer') to --loops")
