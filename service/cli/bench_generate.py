"""``leti bench generate``: the loop's sampling workload through the reference decode path (the
baseline), the fast path and llama.cpp (the anchor) in one run, and adapter-swap latency; the
figures go into docs/BENCHMARKS.md."""

from __future__ import annotations

import asyncio
import json
from dataclasses import asdict
from datetime import date
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from service.core.machine import machine_summary

DOCS = Path(__file__).resolve().parents[2] / "docs" / "BENCHMARKS.md"


def _ints(text: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise typer.BadParameter(f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise typer.BadParameter("expected positive integers")
    return values




def generate(
    prompts: Annotated[int, typer.Option(help="MBPP train prompts in the request")] = 32,
    n: Annotated[int, typer.Option(help="samples per prompt (the loop's default)")] = 4,
    rows: Annotated[str, typer.Option(help="fast-path widths (max_batch_size) to try")] = "32,64",
    max_new_tokens: Annotated[int, typer.Option(
        help="tokens per sample at most (256: the loop's default)")] = 256,
    swaps: Annotated[int, typer.Option(help="adapter swaps to time, idle and busy")] = 5,
    anchor: Annotated[bool, typer.Option(help="run the llama.cpp anchor when built")] = True,
    anchor_slots: Annotated[int, typer.Option(help="llama-server parallel slots")] = 32,
    model: Annotated[str | None, typer.Option(help="HF model dir/name (default SmolLM2)")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda")] = "auto",
    dtype: Annotated[str, typer.Option(help="auto, float32 or bfloat16")] = "auto",
    baseline_dtype: Annotated[str, typer.Option(
        help="the baseline's dtype (the previous default)")] = "float32",
    threads: Annotated[int, typer.Option(help="torch threads (0: torch's default)")] = 0,
    mbpp_path: Annotated[Path | None, typer.Option(
        help="mbpp.jsonl for the prompts (default LETI_MBPP_PATH; else HumanEval)")] = None,
    docs: Annotated[Path | None, typer.Option(help="markdown file to update")] = DOCS,
    no_docs: Annotated[bool, typer.Option("--no-docs", help="print only")] = False,
    json_out: Annotated[Path | None, typer.Option("--json", help="also write figures")] = None,
) -> None:
    """Useful tokens/s on the loop's workload: the reference path (baseline), the fast path at
    each width and llama.cpp's server (the anchor), all in one run; and swap latency."""
    console = Console()
    widths = _ints(rows)
    if prompts < 1 or n < 1:
        raise typer.BadParameter("--prompts and --n must be positive")
    from service.generation.embedded import EmbeddedGenerator
    from service.speed.generation import run_generation_bench
    from service.speed.generation_report import markdown_section
    from service.speed.sections import write_section

    console.print("loading the model ...")
    generator = EmbeddedGenerator.load(model, device=device, dtype=dtype, threads=threads or None)
    baseline_model = None
    if generator.describe()["dtype"] != baseline_dtype:  # the baseline runs the previous default
        from service.generation.compute import compute_thread
        from trainer.base_model import load_base_model

        baseline_model, _ = compute_thread().call(
            lambda: load_base_model(model, device=device, dtype=baseline_dtype))
    result = asyncio.run(run_generation_bench(
        generator, prompts, widths, swaps, mbpp_path, n=n, max_new_tokens=max_new_tokens,
        anchor_slots=anchor_slots, anchor=anchor, baseline_model=baseline_model,
        log=console.print))
    section = markdown_section(result, machine_summary(), date.today().isoformat(),
                               generator.model_name)
    console.print(section)
    if docs is not None and not no_docs:
        write_section(docs, section)
        console.print(f"updated {docs}")
    if json_out is not None:
        figures = {**asdict(result), "date": date.today().isoformat(), "machine": machine_summary(),
                   "model": generator.model_name}
        json_out.write_text(json.dumps(figures, indent=2, default=str))
