"""Bootstrap statistics for the experiment: how sure are we that a pass@1 moved?

A LETI round on a small model moves MBPP pass@1 by a few problems out of hundreds, which is the
same size as the problem-to-problem noise. So every pass@1 comes with a percentile bootstrap
interval over *problems* (the unit that varies between benchmarks), and every comparison of two
evaluations is *paired*: both are scored on the same resampled problems, which cancels the
problems' own difficulty and leaves only the change.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

Verdict = Literal["better", "worse", "no difference"]

_CHUNK = 4_000_000  # resampled items per numpy batch: bounds memory for large benchmarks


def bootstrap_ci(
    values: Sequence[float], *, resamples: int = 2000, level: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile interval of the mean, resampling items with replacement.

    The items are problems, so the interval says how much pass@1 would move on another draw of
    problems like these. Deterministic for a given seed, so a report renders the same twice.
    With 0 or 1 item there is nothing to resample: the interval is the point (0.0 for none).
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    if resamples < 1:
        raise ValueError(f"resamples must be positive, got {resamples}")
    data = np.asarray(values, dtype=float)
    if data.size == 0:
        return 0.0, 0.0
    if data.size == 1 or np.all(data == data[0]):
        point = float(data[0])
        return point, point
    rng = np.random.default_rng(seed)
    n = data.size
    per_batch = max(1, _CHUNK // n)
    means: list[np.ndarray] = []
    left = resamples
    while left > 0:
        batch = min(left, per_batch)
        idx = rng.integers(0, n, size=(batch, n))
        means.append(data[idx].mean(axis=1))
        left -= batch
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(np.concatenate(means), [tail, 1.0 - tail])
    return float(low), float(high)


def task_scores(pass_lists: Mapping[str, Sequence[bool]]) -> dict[str, float]:
    """Per-task pass@1 estimate: the fraction c/n of a task's samples that passed.

    c/n is the unbiased pass@1 for n samples (the k=1 case of the HumanEval estimator), so the
    mean of these over tasks is the evaluation's pass@1. A task with no samples scores 0.
    """
    return {task_id: sum(1 for p in passed if p) / len(passed) if passed else 0.0
            for task_id, passed in pass_lists.items()}


@dataclass(frozen=True, slots=True)
class Difference:
    """A paired change b - a over shared tasks, with its bootstrap interval and a verdict."""

    difference: float
    ci_low: float
    ci_high: float
    tasks: int
    verdict: Verdict

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def verdict_for(ci_low: float, ci_high: float) -> Verdict:
    """Only an interval that excludes zero is a change; zero inside it is "no difference"."""
    if ci_low > 0.0:
        return "better"
    if ci_high < 0.0:
        return "worse"
    return "no difference"


def paired_difference(
    a: Mapping[str, float],
    b: Mapping[str, float],
    *,
    resamples: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> Difference:
    """Mean of b - a over the task ids both score, with a paired bootstrap interval.

    Resampling task ids and taking both scores of each drawn id is the same as resampling the
    per-task differences, which is what this does. Tasks only one side scored are left out (a
    partial evaluation must not count its missing tasks as failures). ValueError if none shared.
    """
    shared = sorted(set(a) & set(b))
    if not shared:
        raise ValueError("the two evaluations share no tasks")
    diffs = [float(b[t]) - float(a[t]) for t in shared]
    mean = float(np.mean(diffs))
    low, high = bootstrap_ci(diffs, resamples=resamples, level=level, seed=seed)
    return Difference(
        difference=mean,
        ci_low=low,
        ci_high=high,
        tasks=len(shared),
        verdict=verdict_for(low, high),
    )
