"""``leti experiment --config experiments/<name>.toml``: run a study (service/experiment/) and
write ``results.json``, plots and ``summary.md`` into its output directory."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console


def experiment(
    config: Annotated[Path, typer.Option("--config", help="experiments/<name>.toml")],
    output: Annotated[Path | None, typer.Option(
        "--output", help="results directory (default: results/<name>)")] = None,
    fresh: Annotated[bool, typer.Option(
        "--fresh", help="start over: delete the output directory's earlier results first")
    ] = False,
    report_only: Annotated[bool, typer.Option(
        "--report-only", help="only redraw plots and summary from results.json")] = False,
    stop_after: Annotated[str | None, typer.Option(
        "--stop-after", help="end after this phase (baseline, round-1, ablation-<name>, ..., "
                             "final): e.g. repeat the baseline only")] = None,
    compare_with: Annotated[Path | None, typer.Option(
        "--compare-with", help="an earlier results directory of the same config: write "
                               "reproducibility.md comparing the two")] = None,
) -> None:
    """Run a study of the loop through the service's own components (docs/RESULTS.md)."""
    from service.experiment.compare import compare_runs, render_comparison
    from service.experiment.config import ExperimentConfigError, load_config
    from service.experiment.report import write_report
    from service.experiment.results import load_results
    from service.experiment.study import Study, StudyError

    err = Console(stderr=True)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    try:
        cfg = load_config(config)
        out = output or Path("results") / cfg.name
        results_file = out / "results.json"
        if report_only:
            if not results_file.is_file():
                raise ExperimentConfigError(f"no {results_file} to report on")
            results = load_results(results_file)
            write_report(results, out)
        else:
            if fresh and out.exists():
                import shutil

                shutil.rmtree(out)
            study = Study(cfg, out, resume=True, on_phase=lambda r: write_report(r, out),
                          stop_after=stop_after)
            results = asyncio.run(study.run())
        if compare_with is not None:
            earlier_file = compare_with / "results.json"
            if not earlier_file.is_file():
                raise ExperimentConfigError(f"no {earlier_file} to compare with")
            earlier = load_results(earlier_file)
            table = render_comparison(compare_runs(earlier, results))
            (out / "reproducibility.md").write_text(
                f"# {cfg.name}: {out} against {compare_with}\n\n{table}\n", encoding="utf-8")
    except (ExperimentConfigError, StudyError) as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    err.print(f"results: {out / 'results.json'}\nsummary: {out / 'summary.md'}", highlight=False)
