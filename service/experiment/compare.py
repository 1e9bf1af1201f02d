"""Two runs of one config side by side (``leti experiment --compare-with``): did the repeat
land where the first run did?"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from service.experiment.figures import figures, unique_evaluations
from service.experiment.results import StudyResults
from service.experiment.summary import ci, pct, pp

_EPS = 1e-12  # a repeat equal to an interval's end is inside it, whatever the float rounding


@dataclass(frozen=True)
class RunComparison:
    """One evaluation in both runs: pass@1 of each, b - a, and the two checks."""

    key: str
    a: float
    b: float
    difference: float
    a_ci_low: float
    a_ci_high: float
    within_noise: bool  # b lies in a's 95% interval: a rerun should land there
    identical: bool  # the per-task pass lists are equal: generation and sandbox deterministic


def compare_runs(a: StudyResults, b: StudyResults) -> list[RunComparison]:
    """For each pass@1 key in both runs: both values, b - a, and whether b lies in a's 95% CI."""
    fa = a.figures or figures(a)
    fb = b.figures or figures(b)
    rows_b = {r.key: r for r in fb.pass_at_1}
    evals_a = {e.key: e for e in unique_evaluations(a)}
    evals_b = {e.key: e for e in unique_evaluations(b)}
    out: list[RunComparison] = []
    for ra in fa.pass_at_1:
        rb = rows_b.get(ra.key)
        if rb is None:
            continue
        ea, eb = evals_a.get(ra.key), evals_b.get(ra.key)
        out.append(RunComparison(
            key=ra.key, a=ra.value, b=rb.value, difference=rb.value - ra.value,
            a_ci_low=ra.ci_low, a_ci_high=ra.ci_high,
            within_noise=ra.ci_low - _EPS <= rb.value <= ra.ci_high + _EPS,
            identical=ea is not None and eb is not None
            and ea.pass_lists() == eb.pass_lists()))
    return out


def render_comparison(rows: Sequence[RunComparison]) -> str:
    """Markdown table of :func:`compare_runs` rows."""
    if not rows:
        return "No evaluation is present in both runs.\n"
    lines = [
        "| Evaluation | pass@1 A | pass@1 B | B - A | A's 95% CI | Within noise | Identical |",
        "|---|---:|---:|---:|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.key} | {pct(r.a)} | {pct(r.b)} | {pp(r.difference)} | "
            f"{ci(r.a_ci_low, r.a_ci_high)} | {'yes' if r.within_noise else '**no**'} | "
            f"{'yes' if r.identical else 'no'} |"
        )
    return "\n".join(lines) + "\n"
