"""Turn an experiment's results dict into figures, plots, a Markdown summary, and run comparisons.

Everything here is a pure function of ``results.json`` (schema 1), so a report can be redrawn
from a finished or a partial run without rerunning anything: each table and plot renders from
whatever phases exist and quietly leaves out the rest. Matplotlib is imported only inside
:func:`write_report` (Agg backend, no display), so importing this module stays cheap.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from service.experiment.stats import bootstrap_ci, paired_difference, task_scores

if TYPE_CHECKING:
    from matplotlib.figure import Figure

LEVEL = 0.95
SEED = 0  # one fixed bootstrap seed: the same results always give the same figures
MAIN_ARM = "leti"
BASE_ARM = "base"
STATUS_ORDER = ("passed", "failed", "error", "syntax_error", "timeout")
PHASE_ORDER = ("sampling", "execution", "training", "gate", "evaluation")
PLOTS = ("pass_at_1.png", "ablations.png", "statuses.png", "timings.png")
TOP_ERROR_TYPES = 8


# ---------------------------------------------------------------------------------------------
# Figures: the numbers behind every table and plot, stored in results["figures"]


def figures(results: Mapping[str, Any]) -> dict[str, Any]:
    """The report's numbers: pass@1 with CIs, paired comparisons, status fractions, timings."""
    evaluations = _evaluations(results)
    scores = {e["key"]: task_scores(e) for e in evaluations}
    return {
        "level": LEVEL,
        "pass_at_1": [_pass_at_1_row(e, scores[e["key"]]) for e in evaluations],
        "comparisons": _comparisons(results, evaluations, scores),
        "statuses": [_status_row(r) for r in _list(results, "rounds")],
        "failure_classes": [_failure_row(e) for e in evaluations],
        "timings": _timing_rows(results, evaluations),
    }


def failure_class(status: str, error_type: str | None) -> str:
    """One program's class: ``passed``, ``wrong answer`` (a test's assert failed), ``syntax
    error``, ``timeout``, ``memory``, ``crashed``, or the exception's type (``NameError``...)."""
    if status == "failed":
        return "wrong answer"
    if status == "error":
        return error_type or "error"
    return status.replace("_", " ")


def _failure_row(evaluation: Mapping[str, Any]) -> dict[str, Any]:
    """How an evaluation's programs ended, counted by class: evaluations of one benchmark
    score the same problems, so a class that shrinks between them shrank for the model."""
    counts: dict[str, int] = {}
    for task in (evaluation.get("tasks") or {}).values():
        for status, error_type in zip(task.get("statuses") or [], task.get("error_types") or [],
                                      strict=False):
            name = failure_class(str(status), error_type)
            counts[name] = counts.get(name, 0) + 1
    return {"key": evaluation.get("key"), "benchmark": evaluation.get("benchmark"),
            "programs": sum(counts.values()), "counts": counts}


def _evaluations(results: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Evaluations with a key, one per key (a resumed run may record one twice)."""
    seen: dict[str, dict[str, Any]] = {}
    for e in _list(results, "evaluations"):
        key = e.get("key")
        if key is None:
            key = f"{e.get('arm')}-r{e.get('round')}/{e.get('benchmark')}"
            e = {**e, "key": key}
        seen[str(key)] = e  # a later record of the same key (a resumed run) supersedes
    return list(seen.values())


def _pass_at_1_row(evaluation: Mapping[str, Any], scores: Mapping[str, float]) -> dict[str, Any]:
    if scores:
        values = list(scores.values())
        value = sum(values) / len(values)
        low, high = bootstrap_ci(values, level=LEVEL, seed=SEED)
    else:  # no per-task records: fall back on the stored figure, with no interval to give
        value = float((evaluation.get("pass_at_k") or {}).get("pass@1", 0.0))
        low = high = value
    return {
        "key": evaluation["key"],
        "arm": evaluation.get("arm"),
        "round": evaluation.get("round"),
        "benchmark": evaluation.get("benchmark"),
        "split": evaluation.get("split"),
        "feedback_steps": evaluation.get("feedback_steps"),
        "value": value,
        "ci_low": low,
        "ci_high": high,
        "tasks": len(scores),
    }


def _comparisons(
    results: Mapping[str, Any],
    evaluations: Sequence[Mapping[str, Any]],
    scores: Mapping[str, Mapping[str, float]],
) -> list[dict[str, Any]]:
    """Each main-arm round vs the baseline on its benchmark, then each ablation vs its reference.

    The last round's HumanEval vs the baseline's is among the first kind whenever both exist.
    A comparison whose evaluations are missing (a partial run) is skipped.
    """
    base: dict[tuple[Any, Any], str] = {}
    for e in evaluations:
        if e.get("arm") == BASE_ARM:
            base.setdefault((e.get("benchmark"), e.get("split")), e["key"])
    pairs: list[tuple[str, str, str, str]] = []  # (name, kind, a, b)
    main = sorted(
        (e for e in evaluations if e.get("arm") == MAIN_ARM),
        key=lambda e: (e.get("benchmark") != "mbpp", str(e.get("benchmark")), _int(e.get("round"))),
    )
    for e in main:
        a = base.get((e.get("benchmark"), e.get("split")))
        if a is not None:
            pairs.append((f"{e['key']} vs {a}", "round", a, e["key"]))
    for ablation in _list(results, "ablations"):
        a, b = ablation.get("compare_to"), ablation.get("evaluation")
        if a in scores and b in scores:
            pairs.append((str(ablation.get("name") or b), "ablation", str(a), str(b)))

    rows: list[dict[str, Any]] = []
    done: set[tuple[str, str]] = set()
    for name, kind, a, b in pairs:
        if (a, b) in done or a not in scores or b not in scores:
            continue
        done.add((a, b))
        try:
            d = paired_difference(scores[a], scores[b], level=LEVEL, seed=SEED)
        except ValueError:  # no shared tasks: nothing to compare
            continue
        rows.append(
            {
                "name": name,
                "kind": kind,
                "a": a,
                "b": b,
                "a_value": _mean(scores[a].values()),
                "b_value": _mean(scores[b].values()),
                **d.as_dict(),
            }
        )
    return rows


def _status_row(round_: Mapping[str, Any]) -> dict[str, Any]:
    counts = {str(k): int(v) for k, v in (round_.get("statuses") or {}).items()}
    errors = {str(k): int(v) for k, v in (round_.get("error_types") or {}).items()}
    total = sum(counts.values())
    error_total = sum(errors.values())
    return {
        "round": round_.get("round"),
        "samples": round_.get("samples", total),
        "passed": round_.get("passed", counts.get("passed", 0)),
        "counts": counts,
        "fractions": {k: (v / total if total else 0.0) for k, v in counts.items()},
        "error_types": errors,
        "error_type_fractions": {
            k: (v / error_total if error_total else 0.0) for k, v in errors.items()
        },
    }


def _timing_rows(
    results: Mapping[str, Any], evaluations: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """Seconds per phase: the baseline evaluation, each main round, then each ablation."""
    rows: list[dict[str, Any]] = []
    base_s = sum(float(e.get("wall_s") or 0.0) for e in evaluations if e.get("arm") == BASE_ARM)
    if any(e.get("arm") == BASE_ARM for e in evaluations):
        rows.append(_timing_row("base", "baseline", 0, {"evaluation": base_s}))
    for r in _list(results, "rounds"):
        rows.append(_timing_row(f"r{r.get('round')}", "round", r.get("round"), r.get("timings_s")))
    for a in _list(results, "ablations"):
        rows.append(
            _timing_row(str(a.get("name")), "ablation", a.get("data_round"), a.get("timings_s"))
        )
    return rows


def _timing_row(label: str, kind: str, round_: Any, phases: Any) -> dict[str, Any]:
    clean = {str(k): float(v) for k, v in (phases or {}).items() if v is not None}
    return {
        "label": label,
        "kind": kind,
        "round": round_,
        "phases": clean,
        "total": sum(clean.values()),
    }


# ---------------------------------------------------------------------------------------------
# Writing the report


def write_report(results: dict[str, Any], out_dir: Path) -> Path:
    """Store figures in ``results``, write results.json, the PNGs and summary.md; return its path.

    results.json is replaced atomically, so a reader (or a crash mid-write) never sees half a
    file. A plot with no data is not drawn, and a stale copy of it from an earlier report into
    the same folder is removed so the summary never links an out-of-date image.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    results["figures"] = figures(results)
    write_atomic(out_dir / "results.json", json.dumps(results, indent=2, default=str) + "\n")
    images = _write_plots(results, out_dir)
    summary = out_dir / "summary.md"
    write_atomic(summary, render_summary(results, images))
    return summary


def write_atomic(path: Path, text: str) -> None:
    """Replace ``path`` in one step: a crash mid-write never leaves half a file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _write_plots(results: Mapping[str, Any], out_dir: Path) -> list[str]:
    """Draw each plot that has data; return the file names written."""
    import matplotlib

    matplotlib.use("Agg")  # headless: no display on servers or in tests
    from matplotlib.figure import Figure  # figures without pyplot's global registry

    figs = results["figures"]
    drawers = {
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


def _plot_pass_at_1(fig: Figure, figs: Mapping[str, Any]) -> bool:
    """pass@1 by round for the baseline (round 0) and the main arm, one line per benchmark."""
    rows = [r for r in figs["pass_at_1"] if r["arm"] in (BASE_ARM, MAIN_ARM)]
    if not rows:
        return False
    ax = fig.add_subplot()
    series = sorted({_series(r) for r in rows}, key=lambda s: (s != "mbpp", s))
    for i, label in enumerate(series):
        points = sorted(
            (r for r in rows if _series(r) == label),
            key=lambda r: (r["arm"] != BASE_ARM, _int(r["round"])),
        )
        xs = [(0 if r["arm"] == BASE_ARM else _int(r["round"])) + 0.06 * i for r in points]
        ys = [100 * r["value"] for r in points]
        ax.errorbar(
            xs, ys, yerr=_yerr(points), marker="os^Dv"[i % 5], capsize=4,
            linestyle=("-" if label == "mbpp" else "--") if len(points) > 1 else "none",
            label=label,
        )
    rounds = sorted({0 if r["arm"] == BASE_ARM else _int(r["round"]) for r in rows})
    ax.set_xticks(rounds, [("base" if x == 0 else f"r{x}") for x in rounds])
    ax.set_xlabel("LETI round (0 = baseline)")
    ax.set_ylabel(f"pass@1 (%), {int(LEVEL * 100)}% bootstrap CI")
    ax.set_title("pass@1 by round")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend()
    return True


def _yerr(points: Sequence[Mapping[str, Any]]) -> list[list[float]]:
    """Error bar lengths in percentage points (never negative, as matplotlib requires)."""
    return [
        [max(0.0, 100 * (p["value"] - p["ci_low"])) for p in points],
        [max(0.0, 100 * (p["ci_high"] - p["value"])) for p in points],
    ]


def _series(row: Mapping[str, Any]) -> str:
    bench, split = str(row.get("benchmark")), row.get("split")
    return bench if split in (None, "test") or bench == "humaneval" else f"{bench} ({split})"


def _plot_ablations(fig: Figure, figs: Mapping[str, Any]) -> bool:
    """Each ablation beside the evaluation it is compared to, both with their CIs."""
    rows = [c for c in figs["comparisons"] if c.get("kind") == "ablation"]
    if not rows:
        return False
    by_key = {r["key"]: r for r in figs["pass_at_1"]}
    ax = fig.add_subplot()
    width = 0.3
    for side, offset, label in (("a", -width / 2, "reference"), ("b", width / 2, "ablation")):
        points = [by_key[c[side]] for c in rows]
        ax.bar(
            [i + offset for i in range(len(rows))],
            [100 * p["value"] for p in points],
            width,
            yerr=_yerr(points),
            capsize=4,
            label=label,
        )
    ax.set_xticks(
        range(len(rows)), [f"{c['name']}\nvs {c['a']}\n({c['verdict']})" for c in rows],
        fontsize=8,
    )
    ax.set_xlim(-0.5 - width * 1.5, len(rows) - 0.5 + width * 1.5)
    ax.set_ylabel(f"pass@1 (%), {int(LEVEL * 100)}% bootstrap CI")
    ax.set_title("Ablations vs their reference")
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    return True


def _plot_statuses(fig: Figure, figs: Mapping[str, Any]) -> bool:
    """Stacked status fractions per round, and beside them the error types' shares."""
    rows = [r for r in figs["statuses"] if r["counts"]]
    if not rows:
        return False
    has_errors = any(r["error_types"] for r in rows)
    axes = fig.subplots(1, 2) if has_errors else [fig.add_subplot()]
    labels = [f"r{r['round']}" for r in rows]
    _stacked(axes[0], labels, _ordered({k for r in rows for k in r["fractions"]}, STATUS_ORDER),
             [r["fractions"] for r in rows], scale=100)
    axes[0].set_ylabel("share of sampled programs (%)")
    axes[0].set_title("Sandbox statuses")
    if has_errors:
        totals: dict[str, int] = {}
        for r in rows:
            for k, v in r["error_types"].items():
                totals[k] = totals.get(k, 0) + v
        top = sorted(totals, key=lambda k: (-totals[k], k))[:TOP_ERROR_TYPES]
        shares = []
        for r in rows:
            share = {k: r["error_type_fractions"].get(k, 0.0) for k in top}
            rest = sum(v for k, v in r["error_type_fractions"].items() if k not in top)
            if rest > 0:
                share["other"] = rest
            shares.append(share)
        kinds = top + (["other"] if any("other" in s for s in shares) else [])
        _stacked(axes[1], labels, kinds, shares, scale=100)
        axes[1].set_ylabel("share of errors (%)")
        axes[1].set_title("Error types")
    return True


def _plot_timings(fig: Figure, figs: Mapping[str, Any]) -> bool:
    """Stacked seconds per phase for the baseline, each round and each ablation."""
    rows = [r for r in figs["timings"] if r["phases"]]
    if not rows:
        return False
    ax = fig.add_subplot()
    phases = _ordered({k for r in rows for k in r["phases"]}, PHASE_ORDER)
    _stacked(ax, [r["label"] for r in rows], phases, [r["phases"] for r in rows], scale=1)
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


# ---------------------------------------------------------------------------------------------
# summary.md


def render_summary(results: Mapping[str, Any], images: Iterable[str] = ()) -> str:
    """The Markdown summary of one run (uses ``results["figures"]``, computing it if absent)."""
    figs = results.get("figures") or figures(results)
    env = results.get("environment") or {}
    lines = [f"# LETI experiment: {results.get('name', 'unnamed')}", ""]
    if not env.get("finished_at"):
        lines += ["> **Partial run**: not finished; the tables show the phases that completed.", ""]
    lines += [_settings_line(results), ""]
    versions = env.get("versions") or {}
    if isinstance(versions, Mapping) and versions:
        lines += ["Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()), ""]

    lines += ["## pass@1", ""]
    if figs["pass_at_1"]:
        lines += [
            "| Evaluation | Arm | Round | Benchmark | Feedback steps | Tasks | pass@1 | 95% CI |",
            "|---|---|---:|---|---:|---:|---:|---|",
        ]
        for r in figs["pass_at_1"]:
            lines.append(
                f"| {r['key']} | {r['arm']} | {_cell(r['round'])} | {r['benchmark']} | "
                f"{_cell(r['feedback_steps'])} | {r['tasks']} | {_pct(r['value'])} | "
                f"{_ci(r['ci_low'], r['ci_high'])} |"
            )
    else:
        lines.append("No evaluations yet.")
    lines.append("")

    lines += ["## Comparisons", ""]
    if figs["comparisons"]:
        lines += [
            (
                "Paired bootstrap over the tasks both evaluations scored. A difference whose "
                f"{int(LEVEL * 100)}% interval contains 0 is reported as **no difference**."
            ),
            "",
            "| Comparison | A | B | pass@1 A | pass@1 B | B - A | 95% CI | Tasks | Verdict |",
            "|---|---|---|---:|---:|---:|---|---:|---|",
        ]
        for c in figs["comparisons"]:
            lines.append(
                f"| {c['name']} | {c['a']} | {c['b']} | {_pct(c['a_value'])} | "
                f"{_pct(c['b_value'])} | {_pp(c['difference'])} | "
                f"{_ci(c['ci_low'], c['ci_high'], signed=True)} | {c['tasks']} | "
                f"**{c['verdict']}** |"
            )
    else:
        lines.append("No comparisons: the evaluations they need are missing.")
    lines.append("")

    lines += _failures_section(figs)
    lines += _rounds_section(results, figs)
    lines += _timings_section(figs)

    images = list(images)
    if images:
        lines += ["## Plots", ""]
        titles = {
            "pass_at_1.png": "pass@1 by round",
            "ablations.png": "Ablations",
            "statuses.png": "Sandbox statuses",
            "timings.png": "Time per phase",
        }
        for name in images:
            lines += [f"![{titles.get(name, name)}]({name})", ""]
    return "\n".join(lines).rstrip() + "\n"


def _rounds_section(results: Mapping[str, Any], figs: Mapping[str, Any]) -> list[str]:
    rounds = _list(results, "rounds")
    lines = ["## Rounds", ""]
    if not rounds:
        return lines + ["No LETI rounds yet.", ""]
    lines += [
        (
            "| Round | Problems | Samples | Passed | Pool pass rate | Trained on | Sampled from "
            "| Steps | Loss first -> last | Gate | Candidate pass@1 | Serving pass@1 "
            "| Paired 95% CI | Serving after |"
        ),
        "|---:|---:|---:|---:|---:|---:|---|---:|---|---|---:|---:|---|---|",
    ]
    for r in rounds:
        t = r.get("training") or {}
        g = r.get("gate") or {}
        loss = (
            f"{t['loss_first']:.3f} -> {t['loss_last']:.3f}"
            if isinstance(t.get("loss_first"), int | float)
            and isinstance(t.get("loss_last"), int | float)
            else "-"
        )
        paired = (
            _ci(g["ci_low"], g["ci_high"], signed=True)
            if isinstance(g.get("ci_low"), int | float) and isinstance(g.get("ci_high"), int | float)
            else "-"
        )
        lines.append(
            f"| {_cell(r.get('round'))} | {len(r.get('problems') or [])} | "
            f"{_cell(r.get('samples'))} | {_cell(r.get('passed'))} | "
            f"{_pct(r.get('pool_pass_rate'))} | {_cell(r.get('trained_on'))} | "
            f"{r.get('adapter_sampled') or 'base'} | {_cell(t.get('steps'))} | {loss} | "
            f"{_cell(g.get('decision'))} | {_pct(g.get('candidate_pass_at_1'))} | "
            f"{_pct(g.get('serving_pass_at_1'))} | {paired} | {r.get('serving_after') or 'base'} |"
        )
    lines.append("")
    warnings = sorted({str(g["warning"]) for r in rounds
                       if (g := r.get("gate") or {}).get("warning")})
    lines += [f"Gate warning: {w}" for w in warnings] + ([""] if warnings else [])

    statuses = [s for s in figs["statuses"] if s["counts"]]
    if statuses:
        kinds = _ordered({k for s in statuses for k in s["counts"]}, STATUS_ORDER)
        lines += [
            "### Sandbox statuses of the sampled programs",
            "",
            "| Round | Samples | " + " | ".join(kinds) + " |",
            "|---:|---:|" + "---:|" * len(kinds),
        ]
        for s in statuses:
            cells = [
                f"{s['counts'].get(k, 0)} ({_pct(s['fractions'].get(k, 0.0))})" for k in kinds
            ]
            lines.append(f"| {_cell(s['round'])} | {_cell(s['samples'])} | " + " | ".join(cells)
                         + " |")
        lines.append("")
        totals: dict[str, int] = {}
        for s in statuses:
            for k, v in s["error_types"].items():
                totals[k] = totals.get(k, 0) + v
        if totals:
            top = sorted(totals, key=lambda k: (-totals[k], k))[:TOP_ERROR_TYPES]
            lines += [
                "Most frequent error types: "
                + ", ".join(f"{k} {totals[k]}" for k in top)
                + ".",
                "",
            ]
    return lines


def _failures_section(figs: Mapping[str, Any]) -> list[str]:
    """Per benchmark, one row per evaluation: how its programs ended, by class."""
    rows = [r for r in figs.get("failure_classes") or [] if r["programs"]]
    if not rows:
        return []
    lines = ["## How the evaluated programs ended", "",
             ("Each evaluation of a benchmark runs the same problems, so a class that shrinks "
              "from one row to the next shrank for the model. Exceptions are named by type."),
             ""]
    for benchmark in dict.fromkeys(r["benchmark"] for r in rows):
        group = [r for r in rows if r["benchmark"] == benchmark]
        totals: dict[str, int] = {}
        for r in group:
            for k, v in r["counts"].items():
                totals[k] = totals.get(k, 0) + v
        first = [k for k in ("passed", "wrong answer") if k in totals]
        rest = sorted((k for k in totals if k not in first), key=lambda k: (-totals[k], k))
        kinds = first + rest
        lines += [f"**{benchmark}**", "", "| Evaluation | Programs | " + " | ".join(kinds) + " |",
                  "|---|---:|" + "---:|" * len(kinds)]
        for r in group:
            lines.append(f"| {r['key']} | {r['programs']} | "
                         + " | ".join(str(r["counts"].get(k, 0)) for k in kinds) + " |")
        lines.append("")
    return lines


def _timings_section(figs: Mapping[str, Any]) -> list[str]:
    rows = [r for r in figs["timings"] if r["phases"]]
    lines = ["## Timings (seconds)", ""]
    if not rows:
        return lines + ["No timings yet.", ""]
    phases = _ordered({k for r in rows for k in r["phases"]}, PHASE_ORDER)
    lines += [
        "| Part | " + " | ".join(phases) + " | Total |",
        "|---|" + "---:|" * (len(phases) + 1),
    ]
    for r in rows:
        cells = [f"{r['phases'][p]:.1f}" if p in r["phases"] else "-" for p in phases]
        lines.append(f"| {r['label']} | " + " | ".join(cells) + f" | {r['total']:.1f} |")
    return lines + [""]


def _settings_line(results: Mapping[str, Any]) -> str:
    """Model, problems, samples, steps, evaluation, seeds, machine, date and wall time (read
    from the config section of ``results.json``, schema 1)."""
    config = results.get("config") or {}
    env = results.get("environment") or {}
    model, data = config.get("model") or {}, config.get("data") or {}
    sampling, ev = config.get("sampling") or {}, config.get("evaluation") or {}
    loop, training = config.get("loop") or {}, config.get("training") or {}
    name = model.get("name") or "SmolLM2-135M-Instruct (default)"
    parts = [f"model `{name}` ({model.get('backend', '?')})"]
    if loop:
        parts.append(f"{loop.get('rounds')} rounds x {loop.get('problems_per_round')} MBPP train "
                     f"problems x {sampling.get('n')} samples at T={sampling.get('temperature')}")
    if training:
        bounds = [f"{training['max_steps']} steps" if training.get("max_steps") else "",
                  f"{training['feedback_steps']} feedback steps"
                  if training.get("feedback_steps") else ""]
        bound = " and ".join(b for b in bounds if b)
        length = (f"{training.get('feedback_steps')} feedback steps/round"
                  if training.get("epochs") is None else
                  f"{training.get('epochs')} epochs/round over {training.get('selection')} data "
                  f"from {training.get('init')}" + (f" (at most {bound})" if bound else ""))
        parts.append(f"{length} (batch {training.get('batch_size')} x "
                     f"{training.get('grad_accum', 1)}, code ratio {training.get('code_ratio')}, "
                     f"lr {training.get('learning_rate')}, LoRA r={training.get('lora_rank')})")
    if ev:
        parts.append(f"eval n={ev.get('n')} at T={ev.get('temperature')} on MBPP test "
                     f"{data.get('test_problems')} + HumanEval {data.get('humaneval_problems')}")
    parts.append(f"seed {config.get('seed')} (eval {ev.get('seed')})")
    machine = env.get("machine")
    if isinstance(machine, Mapping) and machine:
        described = [f"{k} {v}" for k, v in machine.items()
                     if v is not None and not isinstance(v, dict | list)]
        parts.append("machine " + ", ".join(described))
    if env.get("started_at"):
        parts.append(f"started {env['started_at']}")
    if env.get("wall_s") is not None:
        wall = _duration(float(env["wall_s"]))
        parts.append(f"wall {wall}" + ("" if env.get("finished_at") else " (so far)"))
    return "**Settings:** " + " · ".join(parts)


# ---------------------------------------------------------------------------------------------
# Comparing two runs (reproducibility)


def compare_runs(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[dict[str, Any]]:
    """For each pass@1 key in both runs: both values, b - a, and whether b lies in a's 95% CI.

    "within_noise" is the reproducibility check (a rerun should land inside the first run's
    interval); "identical" says the per-task pass lists are equal, i.e. generation and the
    sandbox were fully deterministic.
    """
    fa = a.get("figures") or figures(a)
    fb = b.get("figures") or figures(b)
    rows_b = {r["key"]: r for r in fb["pass_at_1"]}
    evals_a = {e["key"]: e for e in _evaluations(a)}
    evals_b = {e["key"]: e for e in _evaluations(b)}
    out: list[dict[str, Any]] = []
    for ra in fa["pass_at_1"]:
        rb = rows_b.get(ra["key"])
        if rb is None:
            continue
        eps = 1e-12
        ea, eb = evals_a.get(ra["key"]), evals_b.get(ra["key"])
        out.append(
            {
                "key": ra["key"],
                "a": ra["value"],
                "b": rb["value"],
                "difference": rb["value"] - ra["value"],
                "a_ci_low": ra["ci_low"],
                "a_ci_high": ra["ci_high"],
                "within_noise": ra["ci_low"] - eps <= rb["value"] <= ra["ci_high"] + eps,
                "identical": ea is not None and eb is not None
                and _pass_lists(ea) == _pass_lists(eb),
            }
        )
    return out


def render_comparison(rows: Sequence[Mapping[str, Any]]) -> str:
    """Markdown table of :func:`compare_runs` rows."""
    if not rows:
        return "No evaluation is present in both runs.\n"
    lines = [
        "| Evaluation | pass@1 A | pass@1 B | B - A | A's 95% CI | Within noise | Identical |",
        "|---|---:|---:|---:|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['key']} | {_pct(r['a'])} | {_pct(r['b'])} | {_pp(r['difference'])} | "
            f"{_ci(r['a_ci_low'], r['a_ci_high'])} | {'yes' if r['within_noise'] else '**no**'} | "
            f"{'yes' if r['identical'] else 'no'} |"
        )
    return "\n".join(lines) + "\n"


def _pass_lists(evaluation: Mapping[str, Any]) -> dict[str, list[bool]]:
    return {
        t: [bool(p) for p in (rec or {}).get("passed") or []]
        for t, rec in (evaluation.get("tasks") or {}).items()
    }


# ---------------------------------------------------------------------------------------------
# Small helpers


def _list(results: Mapping[str, Any], name: str) -> list[dict[str, Any]]:
    return [dict(x) for x in (results.get(name) or []) if isinstance(x, Mapping)]


def _int(x: Any) -> int:
    try:
        return int(x)
    except (TypeError, ValueError):
        return 0


def _mean(values: Iterable[float]) -> float:
    vals = list(values)
    return sum(vals) / len(vals) if vals else 0.0


def _ordered(keys: Iterable[str], order: Sequence[str]) -> list[str]:
    """Known keys in their usual order, then any others alphabetically."""
    keys = set(keys)
    return [k for k in order if k in keys] + sorted(keys - set(order))


def _cell(value: Any) -> str:
    return "-" if value is None else str(value)


def _pct(value: Any) -> str:
    return f"{100 * float(value):.1f}%" if isinstance(value, int | float) else "-"


def _pp(value: float) -> str:
    return f"{100 * value:+.1f} pp"


def _ci(low: float, high: float, *, signed: bool = False) -> str:
    if signed:
        return f"[{100 * low:+.1f}, {100 * high:+.1f}] pp"
    return f"[{100 * low:.1f}%, {100 * high:.1f}%]"


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    minutes = seconds / 60
    if minutes < 120:
        return f"{minutes:.1f} min"
    return f"{int(minutes // 60)} h {int(minutes % 60):02d} min"
