"""``leti bench dtype``: the quality check behind ``dtype="auto"`` (greedy MBPP pass@1 in float32
and each candidate dtype, paired over problems); the figures go into docs/BENCHMARKS.md."""

from __future__ import annotations

import asyncio
import json
from dataclasses import asdict
from datetime import date
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from service.cli.bench_generate import DOCS
from service.core.machine import machine_summary


def dtype(
    candidates: Annotated[str, typer.Option(help="dtypes to check against float32")] = "bfloat16",
    problems: Annotated[int, typer.Option(help="MBPP test problems (first N)")] = 200,
    max_new_tokens: Annotated[int, typer.Option(help="tokens per program at most")] = 256,
    model: Annotated[str | None, typer.Option(help="HF model dir/name (default SmolLM2)")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda")] = "auto",
    mbpp_path: Annotated[Path | None, typer.Option(
        help="mbpp.jsonl (default LETI_MBPP_PATH)")] = None,
    docs: Annotated[Path | None, typer.Option(help="markdown file to update")] = DOCS,
    no_docs: Annotated[bool, typer.Option("--no-docs", help="print only")] = False,
    json_out: Annotated[Path | None, typer.Option("--json", help="also write figures")] = None,
) -> None:
    """Greedy MBPP pass@1 per dtype, paired against float32, and the identical-program share."""
    from service.experiment.dtype_check import markdown_section, run_dtype_check
    from service.speed.sections import write_section

    console = Console()
    if problems < 2:
        raise typer.BadParameter("--problems must be at least 2")
    names = [c.strip() for c in candidates.split(",") if c.strip()]
    from trainer.base_model import BaseModelError, resolve_dtype

    try:  # refuse a bad name before the float32 pass spends minutes
        for name in names:
            resolve_dtype(name, "cpu")
    except BaseModelError as exc:
        raise typer.BadParameter(str(exc), param_hint="--candidates") from None
    if not names:
        raise typer.BadParameter("name at least one dtype", param_hint="--candidates")
    result = asyncio.run(run_dtype_check(names, problems, model=model, device=device,
                                         mbpp_path=mbpp_path, max_new_tokens=max_new_tokens,
                                         log=console.print))
    section = markdown_section(result, machine_summary(), date.today().isoformat(),
                               model or "SmolLM2-135M-Instruct")
    console.print(section)
    if docs is not None and not no_docs:
        write_section(docs, section)
        console.print(f"updated {docs}")
    if json_out is not None:
        json_out.write_text(json.dumps({**asdict(result), "date": date.today().isoformat(),
                                        "machine": machine_summary()}, indent=2, default=str))
