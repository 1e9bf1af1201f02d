"""summary.md: one run's settings, pass@1, comparisons, failure classes, rounds and timings as
Markdown tables, read from the stored figures and the records. Each section renders whatever
phases exist, so a partial run has a summary too."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from service.experiment.figures import (
    LEVEL,
    PHASE_ORDER,
    STATUS_ORDER,
    figures,
    ordered,
    sum_counts,
    top_error_types,
)
from service.experiment.plots import TITLES
from service.experiment.results import Figures, RoundRecord, StudyResults


def render_summary(results: StudyResults, images: Iterable[str] = ()) -> str:
    """The Markdown summary of one run (uses ``results.figures``, computing them if absent)."""
    figs = results.figures or figures(results)
    lines = _header(results)
    lines += _pass_at_1_section(figs)
    lines += _comparisons_section(figs)
    lines += _failures_section(figs)
    lines += _rounds_section(results.rounds)
    lines += _statuses_section(figs)
    lines += _timings_section(figs)
    images = list(images)
    if images:
        lines += ["## Plots", ""]
        for name in images:
            lines += [f"![{TITLES.get(name, name)}]({name})", ""]
    return "\n".join(lines).rstrip() + "\n"


def _header(results: StudyResults) -> list[str]:
    env = results.environment
    lines = [f"# LETI experiment: {results.name}", ""]
    if not env.finished_at:
        lines += ["> **Partial run**: not finished; the tables show the phases that completed.", ""]
    lines += [settings_line(results), ""]
    if env.versions:
        lines += ["Versions: " + ", ".join(f"{k} {v}" for k, v in env.versions.items()), ""]
    return lines


def _pass_at_1_section(figs: Figures) -> list[str]:
    lines = ["## pass@1", ""]
    if not figs.pass_at_1:
        return lines + ["No evaluations yet.", ""]
    lines += [
        "| Evaluation | Arm | Round | Benchmark | Feedback steps | Tasks | pass@1 | 95% CI |",
        "|---|---|---:|---|---:|---:|---:|---|",
    ]
    for r in figs.pass_at_1:
        lines.append(
            f"| {r.key} | {r.arm} | {cell(r.round)} | {r.benchmark} | "
            f"{cell(r.feedback_steps)} | {r.tasks} | {pct(r.value)} | "
            f"{ci(r.ci_low, r.ci_high)} |"
        )
    return lines + [""]


def _comparisons_section(figs: Figures) -> list[str]:
    lines = ["## Comparisons", ""]
    if not figs.comparisons:
        return lines + ["No comparisons: the evaluations they need are missing.", ""]
    lines += [
        (
            "Paired bootstrap over the tasks both evaluations scored. A difference whose "
            f"{int(LEVEL * 100)}% interval contains 0 is reported as **no difference**."
        ),
        "",
        "| Comparison | A | B | pass@1 A | pass@1 B | B - A | 95% CI | Tasks | Verdict |",
        "|---|---|---|---:|---:|---:|---|---:|---|",
    ]
    for c in figs.comparisons:
        lines.append(
            f"| {c.name} | {c.a} | {c.b} | {pct(c.a_value)} | "
            f"{pct(c.b_value)} | {pp(c.difference)} | "
            f"{ci(c.ci_low, c.ci_high, signed=True)} | {c.tasks} | "
            f"**{c.verdict}** |"
        )
    return lines + [""]


def _failures_section(figs: Figures) -> list[str]:
    """Per benchmark, one row per evaluation: how its programs ended, by class."""
    rows = [r for r in figs.failure_classes if r.programs]
    if not rows:
        return []
    lines = ["## How the evaluated programs ended", "",
             ("Each evaluation of a benchmark runs the same problems, so a class that shrinks "
              "from one row to the next shrank for the model. Exceptions are named by type."),
             ""]
    for benchmark in dict.fromkeys(r.benchmark for r in rows):
        group = [r for r in rows if r.benchmark == benchmark]
        totals = sum_counts(r.counts for r in group)
        first = [k for k in ("passed", "wrong answer") if k in totals]
        rest = sorted((k for k in totals if k not in first), key=lambda k: (-totals[k], k))
        kinds = first + rest
        lines += [f"**{benchmark}**", "", "| Evaluation | Programs | " + " | ".join(kinds) + " |",
                  "|---|---:|" + "---:|" * len(kinds)]
        for r in group:
            lines.append(f"| {r.key} | {r.programs} | "
                         + " | ".join(str(r.counts.get(k, 0)) for k in kinds) + " |")
        lines.append("")
    return lines


def _rounds_section(rounds: list[RoundRecord]) -> list[str]:
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
        t, g = r.training, r.gate
        loss = (f"{t.loss_first:.3f} -> {t.loss_last:.3f}"
                if isinstance(t.loss_first, int | float) and isinstance(t.loss_last, int | float)
                else "-")
        paired = (ci(g.ci_low, g.ci_high, signed=True)
                  if isinstance(g.ci_low, int | float) and isinstance(g.ci_high, int | float)
                  else "-")
        lines.append(
            f"| {cell(r.round)} | {len(r.problems)} | "
            f"{cell(r.samples)} | {cell(r.passed)} | "
            f"{pct(r.pool_pass_rate)} | {cell(r.trained_on)} | "
            f"{r.adapter_sampled or 'base'} | {cell(t.steps)} | {loss} | "
            f"{cell(g.decision)} | {pct(g.candidate_pass_at_1)} | "
            f"{pct(g.serving_pass_at_1)} | {paired} | {r.serving_after or 'base'} |"
        )
    lines.append("")
    warnings = sorted({str(r.gate.warning) for r in rounds if r.gate.warning})
    return lines + [f"Gate warning: {w}" for w in warnings] + ([""] if warnings else [])


def _statuses_section(figs: Figures) -> list[str]:
    """The rounds' sampled programs by sandbox status, then the most frequent error types."""
    statuses = [s for s in figs.statuses if s.counts]
    if not statuses:
        return []
    kinds = ordered({k for s in statuses for k in s.counts}, STATUS_ORDER)
    lines = [
        "### Sandbox statuses of the sampled programs",
        "",
        "| Round | Samples | " + " | ".join(kinds) + " |",
        "|---:|---:|" + "---:|" * len(kinds),
    ]
    for s in statuses:
        cells = [f"{s.counts.get(k, 0)} ({pct(s.fractions.get(k, 0.0))})" for k in kinds]
        lines.append(f"| {cell(s.round)} | {cell(s.samples)} | " + " | ".join(cells) + " |")
    lines.append("")
    totals, top = top_error_types(statuses)
    if totals:
        lines += ["Most frequent error types: "
                  + ", ".join(f"{k} {totals[k]}" for k in top) + ".", ""]
    return lines


def _timings_section(figs: Figures) -> list[str]:
    rows = [r for r in figs.timings if r.phases]
    lines = ["## Timings (seconds)", ""]
    if not rows:
        return lines + ["No timings yet.", ""]
    phases = ordered({k for r in rows for k in r.phases}, PHASE_ORDER)
    lines += [
        "| Part | " + " | ".join(phases) + " | Total |",
        "|---|" + "---:|" * (len(phases) + 1),
    ]
    for r in rows:
        cells = [f"{r.phases[p]:.1f}" if p in r.phases else "-" for p in phases]
        lines.append(f"| {r.label} | " + " | ".join(cells) + f" | {r.total:.1f} |")
    return lines + [""]


def settings_line(results: StudyResults) -> str:
    """Model, problems, samples, steps, evaluation, seeds, machine, date and wall time. The
    config is read as the mapping it is stored as: configs of earlier versions render too."""
    config = results.config
    data, ev = config.get("data") or {}, config.get("evaluation") or {}
    name = (config.get("model") or {}).get("name") or "SmolLM2-135M-Instruct (default)"
    parts = [f"model `{name}` ({(config.get('model') or {}).get('backend', '?')})"]
    parts += _run_size(config)
    if ev:
        parts.append(f"eval n={ev.get('n')} at T={ev.get('temperature')} on MBPP test "
                     f"{data.get('test_problems')} + HumanEval {data.get('humaneval_problems')}")
    parts.append(f"seed {config.get('seed')} (eval {ev.get('seed')})")
    env = results.environment
    machine = env.machine.to_json() if env.machine is not None else {}
    if machine:
        described = [f"{k} {v}" for k, v in machine.items()
                     if v is not None and not isinstance(v, dict | list)]
        parts.append("machine " + ", ".join(described))
    if env.started_at:
        parts.append(f"started {env.started_at}")
    if env.wall_s is not None:
        wall = _duration(float(env.wall_s))
        parts.append(f"wall {wall}" + ("" if env.finished_at else " (so far)"))
    return "**Settings:** " + " · ".join(parts)


def _run_size(config: Mapping[str, Any]) -> list[str]:
    """The rounds and each round's training, as the config set them."""
    loop, training = config.get("loop") or {}, config.get("training") or {}
    sampling = config.get("sampling") or {}
    parts = []
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
    return parts


def cell(value: Any) -> str:
    """A table cell: the value, or "-" for none."""
    return "-" if value is None else str(value)


def pct(value: Any) -> str:
    """A fraction as a percentage, or "-" for none."""
    return f"{100 * float(value):.1f}%" if isinstance(value, int | float) else "-"


def pp(value: float) -> str:
    """A difference of fractions in signed percentage points."""
    return f"{100 * value:+.1f} pp"


def ci(low: float, high: float, *, signed: bool = False) -> str:
    """An interval of fractions, in percent (signed: of a difference, in points)."""
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
