"""Write a study's report into its directory: the figures into results.json, the PNG plots and
summary.md. Called after every phase and by ``leti experiment --report-only``."""

from __future__ import annotations

from pathlib import Path

from service.experiment.figures import figures
from service.experiment.plots import write_plots
from service.experiment.results import StudyResults, save_results, write_atomic
from service.experiment.summary import render_summary


def write_report(results: StudyResults, out_dir: Path) -> Path:
    """Store the figures in ``results``, write results.json, the plots and summary.md; return
    the summary's path. Files are replaced atomically, so a reader (or a crash mid-write)
    never sees half a file."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    results.figures = figures(results)
    save_results(out_dir / "results.json", results)
    images = write_plots(results.figures, out_dir)
    summary = out_dir / "summary.md"
    write_atomic(summary, render_summary(results, images))
    return summary
