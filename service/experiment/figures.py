"""The numbers behind every table and plot of the report, computed from a study's records.

A pure function of the records, so a report can be redrawn from a finished or a partial run
without rerunning anything: each figure comes from whatever phases exist and quietly leaves
out the rest. The result is stored in results.json (``figures``) beside what it came from.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace

from service.experiment.results import (
    ComparisonRow,
    EvaluationRecord,
    FailureRow,
    Figures,
    PassAt1Row,
    RoundRecord,
    StatusRow,
    StudyResults,
    TimingRow,
)
from service.experiment.stats import bootstrap_ci, paired_difference, task_scores

LEVEL = 0.95
SEED = 0  # one fixed bootstrap seed: the same results always give the same figures
MAIN_ARM = "leti"
BASE_ARM = "base"
STATUS_ORDER = ("passed", "failed", "error", "syntax_error", "timeout")
PHASE_ORDER = ("sampling", "execution", "training", "gate", "evaluation")
TOP_ERROR_TYPES = 8


def figures(results: StudyResults) -> Figures:
    """The report's numbers: pass@1 with CIs, paired comparisons, status fractions, timings."""
    evaluations = unique_evaluations(results)
    scores = {e.key: task_scores(e.pass_lists()) for e in evaluations}
    return Figures(
        level=LEVEL,
        pass_at_1=[_pass_at_1_row(e, scores[e.key]) for e in evaluations],
        comparisons=_comparisons(results, evaluations, scores),
        statuses=[_status_row(r) for r in results.rounds],
        failure_classes=[_failure_row(e) for e in evaluations],
        timings=_timing_rows(results, evaluations),
    )


def unique_evaluations(results: StudyResults) -> list[EvaluationRecord]:
    """Evaluations with a key, one per key (a resumed run may record one twice)."""
    seen: dict[str, EvaluationRecord] = {}
    for e in results.evaluations:
        if not e.key:  # files from before evaluations had keys
            e = replace(e, key=f"{e.arm}-r{e.round}/{e.benchmark}")
        seen[e.key] = e  # a later record of the same key (a resumed run) supersedes
    return list(seen.values())


def failure_class(status: str, error_type: str | None) -> str:
    """One program's class: ``passed``, ``wrong answer`` (a test's assert failed), ``syntax
    error``, ``timeout``, ``memory``, ``crashed``, or the exception's type (``NameError``...)."""
    if status == "failed":
        return "wrong answer"
    if status == "error":
        return error_type or "error"
    return status.replace("_", " ")


def top_error_types(rows: Sequence[StatusRow]) -> tuple[dict[str, int], list[str]]:
    """Error types summed over rounds, and the most frequent of them (ties by name): the
    summary lists them and the statuses plot gives each its own colour."""
    totals = sum_counts(r.error_types for r in rows)
    return totals, sorted(totals, key=lambda k: (-totals[k], k))[:TOP_ERROR_TYPES]


def sum_counts(counts: Iterable[Mapping[str, int]]) -> dict[str, int]:
    """Counts by name summed over rows, in the order the names first appear."""
    totals: dict[str, int] = {}
    for row in counts:
        for k, v in row.items():
            totals[k] = totals.get(k, 0) + v
    return totals


def ordered(keys: Iterable[str], order: Sequence[str]) -> list[str]:
    """Known keys in their usual order, then any others alphabetically."""
    keys = set(keys)
    return [k for k in order if k in keys] + sorted(keys - set(order))


def round_of(value: int | None) -> int:
    """A round number to sort and place by (0 where a record has none)."""
    try:
        return int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return 0


def _failure_row(evaluation: EvaluationRecord) -> FailureRow:
    """How an evaluation's programs ended, counted by class: evaluations of one benchmark
    score the same problems, so a class that shrinks between them shrank for the model."""
    counts: dict[str, int] = {}
    for task in evaluation.tasks.values():
        for status, error_type in zip(task.statuses, task.error_types, strict=False):
            name = failure_class(str(status), error_type)
            counts[name] = counts.get(name, 0) + 1
    return FailureRow(key=evaluation.key, benchmark=evaluation.benchmark,
                      programs=sum(counts.values()), counts=counts)


def _pass_at_1_row(evaluation: EvaluationRecord, scores: Mapping[str, float]) -> PassAt1Row:
    if scores:
        values = list(scores.values())
        value = sum(values) / len(values)
        low, high = bootstrap_ci(values, level=LEVEL, seed=SEED)
    else:  # no per-task records: fall back on the stored figure, with no interval to give
        value = float(evaluation.pass_at_k.get("pass@1", 0.0))
        low = high = value
    return PassAt1Row(key=evaluation.key, arm=evaluation.arm, round=evaluation.round,
                      benchmark=evaluation.benchmark, split=evaluation.split,
                      feedback_steps=evaluation.feedback_steps, value=value, ci_low=low,
                      ci_high=high, tasks=len(scores))


def _comparisons(results: StudyResults, evaluations: Sequence[EvaluationRecord],
                 scores: Mapping[str, Mapping[str, float]]) -> list[ComparisonRow]:
    """Each main-arm round vs the baseline on its benchmark, then each ablation vs its reference.

    The last round's HumanEval vs the baseline's is among the first kind whenever both exist.
    A comparison whose evaluations are missing (a partial run) is skipped.
    """
    base: dict[tuple[str, str | None], str] = {}
    for e in evaluations:
        if e.arm == BASE_ARM:
            base.setdefault((e.benchmark, e.split), e.key)
    pairs: list[tuple[str, str, str, str]] = []  # (name, kind, a, b)
    main = sorted((e for e in evaluations if e.arm == MAIN_ARM),
                  key=lambda e: (e.benchmark != "mbpp", e.benchmark, round_of(e.round)))
    for e in main:
        a = base.get((e.benchmark, e.split))
        if a is not None:
            pairs.append((f"{e.key} vs {a}", "round", a, e.key))
    for ablation in results.ablations:
        a, b = ablation.compare_to, ablation.evaluation
        if a in scores and b in scores:
            pairs.append((str(ablation.name or b), "ablation", str(a), str(b)))

    rows: list[ComparisonRow] = []
    done: set[tuple[str, str]] = set()
    for name, kind, a, b in pairs:
        if (a, b) in done or a not in scores or b not in scores:
            continue
        done.add((a, b))
        try:
            d = paired_difference(scores[a], scores[b], level=LEVEL, seed=SEED)
        except ValueError:  # no shared tasks: nothing to compare
            continue
        rows.append(ComparisonRow(name=name, kind=kind, a=a, b=b,
                                  a_value=_mean(scores[a].values()),
                                  b_value=_mean(scores[b].values()), **d.as_dict()))
    return rows


def _status_row(round_: RoundRecord) -> StatusRow:
    counts = {str(k): int(v) for k, v in round_.statuses.items()}
    errors = {str(k): int(v) for k, v in round_.error_types.items()}
    total = sum(counts.values())
    error_total = sum(errors.values())
    return StatusRow(
        round=round_.round,
        samples=total if round_.samples is None else round_.samples,
        passed=counts.get("passed", 0) if round_.passed is None else round_.passed,
        counts=counts,
        fractions={k: (v / total if total else 0.0) for k, v in counts.items()},
        error_types=errors,
        error_type_fractions={k: (v / error_total if error_total else 0.0)
                              for k, v in errors.items()},
    )


def _timing_rows(results: StudyResults,
                 evaluations: Sequence[EvaluationRecord]) -> list[TimingRow]:
    """Seconds per phase: the baseline evaluation, each main round, then each ablation."""
    rows: list[TimingRow] = []
    if any(e.arm == BASE_ARM for e in evaluations):
        base_s = sum(float(e.wall_s or 0.0) for e in evaluations if e.arm == BASE_ARM)
        rows.append(_timing_row("base", "baseline", 0, {"evaluation": base_s}))
    for r in results.rounds:
        rows.append(_timing_row(f"r{r.round}", "round", r.round, r.timings_s))
    for a in results.ablations:
        rows.append(_timing_row(str(a.name), "ablation", a.data_round, a.timings_s))
    return rows


def _timing_row(label: str, kind: str, round_: int | None,
                phases: Mapping[str, float | None]) -> TimingRow:
    clean = {str(k): float(v) for k, v in phases.items() if v is not None}
    return TimingRow(label=label, kind=kind, round=round_, phases=clean,
                     total=sum(clean.values()))


def _mean(values: Iterable[float]) -> float:
    vals = list(values)
    return sum(vals) / len(vals) if vals else 0.0
