"""The report's PNG plots, drawn from the stored figures.

Matplotlib is imported only inside :func:`write_plots` (Agg backend, no display), so importing
this module stays cheap.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from service.experiment.figures import (
    BASE_ARM,
    LEVEL,
    MAIN_ARM,
    PHASE_ORDER,
    STATUS_ORDER,
    ordered,
    round_of,
    top_error_types,
)
from service.experiment.results import Figures, PassAt1Row

if TYPE_CHECKING:
    from matplotlib.figure import Figure

PLOTS = ("pass_at_1.png", "ablations.png", "statuses.png", "timings.png")
TITLES = {"pass_at_1.png": "pass@1 by round", "ablations.png": "Ablations",
          "statuses.png": "Sandbox statuses", "timings.png": "Time per phase"}


def write_plots(figs: Figures, out_dir: Path) -> list[str]:
    """Draw each plot that has data; return the file names written. A plot with no data is
    not drawn, and a stale copy of it from an earlier report is removed, so the summary never
    links an out-of-date image."""
    import matplotlib

    matplotlib.use("Agg")  # headless: no display on servers or in tests
    from matplotlib.figure import Figure  # figures without pyplot's global registry

    drawers: dict[str, Callable[[Figure, Figures], bool]] = {
        "pass_at_1.png": _plot_pass_at_1,
        "ablations.png": _plot_ablations,
        "statuses.png": _plot_statuses,
        "timings.png": _plot_timings,
    }
    written: list[str] = []
    for name, draw in drawers.items():
        path = out_dir / name
        fig = Figure(figsize=(8.5, 4.5), layout="constrained")
        if draw(fig, figs):
            fig.savefig(path, dpi=100, format="png")
            written.append(name)
        else:
            path.unlink(missing_ok=True)
    return written


def _plot_pass_at_1(fig: Figure, figs: Figures) -> bool:
    """pass@1 by round for the baseline (round 0) and the main arm, one line per benchmark."""
    rows = [r for r in figs.pass_at_1 if r.arm in (BASE_ARM, MAIN_ARM)]
    if not rows:
        return False
    ax = fig.add_subplot()
    series = sorted({_series(r) for r in rows}, key=lambda s: (s != "mbpp", s))
    for i, label in enumerate(series):
        points = sorted((r for r in rows if _series(r) == label),
                        key=lambda r: (r.arm != BASE_ARM, round_of(r.round)))
        xs = [(0 if r.arm == BASE_ARM else round_of(r.round)) + 0.06 * i for r in points]
        ys = [100 * r.value for r in points]
        ax.errorbar(
            xs, ys, yerr=_yerr(points), marker="os^Dv"[i % 5], capsize=4,
            linestyle=("-" if label == "mbpp" else "--") if len(points) > 1 else "none",
            label=label,
        )
    rounds = sorted({0 if r.arm == BASE_ARM else round_of(r.round) for r in rows})
    ax.set_xticks(rounds, [("base" if x == 0 else f"r{x}") for x in rounds])
    ax.set_xlabel("LETI round (0 = baseline)")
    ax.set_ylabel(f"pass@1 (%), {int(LEVEL * 100)}% bootstrap CI")
    ax.set_title("pass@1 by round")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend()
    return True


def _yerr(points: Sequence[PassAt1Row]) -> list[list[float]]:
    """Error bar lengths in percentage points (never negative, as matplotlib requires)."""
    return [
        [max(0.0, 100 * (p.value - p.ci_low)) for p in points],
        [max(0.0, 100 * (p.ci_high - p.value)) for p in points],
    ]


def _series(row: PassAt1Row) -> str:
    bench, split = str(row.benchmark), row.split
    return bench if split in (None, "test") or bench == "humaneval" else f"{bench} ({split})"


def _plot_ablations(fig: Figure, figs: Figures) -> bool:
    """Each ablation beside the evaluation it is compared to, both with their CIs."""
    rows = [c for c in figs.comparisons if c.kind == "ablation"]
    if not rows:
        return False
    by_key = {r.key: r for r in figs.pass_at_1}
    ax = fig.add_subplot()
    width = 0.3
    for side, offset, label in (("a", -width / 2, "reference"), ("b", width / 2, "ablation")):
        points = [by_key[c.a if side == "a" else c.b] for c in rows]
        ax.bar(
            [i + offset for i in range(len(rows))],
            [100 * p.value for p in points],
            width,
            yerr=_yerr(points),
            capsize=4,
            label=label,
        )
    ax.set_xticks(
        range(len(rows)), [f"{c.name}\nvs {c.a}\n({c.verdict})" for c in rows],
        fontsize=8,
    )
    ax.set_xlim(-0.5 - width * 1.5, len(rows) - 0.5 + width * 1.5)
    ax.set_ylabel(f"pass@1 (%), {int(LEVEL * 100)}% bootstrap CI")
    ax.set_title("Ablations vs their reference")
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    return True


def _plot_statuses(fig: Figure, figs: Figures) -> bool:
    """Stacked status fractions per round, and beside them the error types' shares."""
    rows = [r for r in figs.statuses if r.counts]
    if not rows:
        return False
    has_errors = any(r.error_types for r in rows)
    axes = fig.subplots(1, 2) if has_errors else [fig.add_subplot()]
    labels = [f"r{r.round}" for r in rows]
    _stacked(axes[0], labels, ordered({k for r in rows for k in r.fractions}, STATUS_ORDER),
             [r.fractions for r in rows], scale=100)
    axes[0].set_ylabel("share of sampled programs (%)")
    axes[0].set_title("Sandbox statuses")
    if has_errors:
        _, top = top_error_types(rows)
        shares = []
        for r in rows:
            share = {k: r.error_type_fractions.get(k, 0.0) for k in top}
            rest = sum(v for k, v in r.error_type_fractions.items() if k not in top)
            if rest > 0:
                share["other"] = rest
            shares.append(share)
        kinds = top + (["other"] if any("other" in s for s in shares) else [])
        _stacked(axes[1], labels, kinds, shares, scale=100)
        axes[1].set_ylabel("share of errors (%)")
        axes[1].set_title("Error types")
    return True


def _plot_timings(fig: Figure, figs: Figures) -> bool:
    """Stacked seconds per phase for the baseline, each round and each ablation."""
    rows = [r for r in figs.timings if r.phases]
    if not rows:
        return False
    ax = fig.add_subplot()
    phases = ordered({k for r in rows for k in r.phases}, PHASE_ORDER)
    _stacked(ax, [r.label for r in rows], phases, [r.phases for r in rows], scale=1)
    ax.set_ylabel("seconds")
    ax.set_title("Time per phase")
    return True


def _stacked(
    ax: Any, labels: Sequence[str], kinds: Sequence[str], values: Sequence[Mapping[str, float]],
    *, scale: float,
) -> None:
    bottoms = [0.0] * len(labels)
    for kind in kinds:
        heights = [scale * float(v.get(kind, 0.0)) for v in values]
        ax.bar(labels, heights, bottom=bottoms, label=kind)
        bottoms = [b + h for b, h in zip(bottoms, heights, strict=True)]
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))  # beside, not over bars
    ax.grid(axis="y", alpha=0.3)
