"""Bootstrap statistics of the experiment report, on small hand-made pass patterns."""

from __future__ import annotations

import pytest

from service.experiment.stats import (
    Difference,
    bootstrap_ci,
    paired_difference,
    task_scores,
    verdict_for,
)


def pattern(n: int, passed: int) -> list[float]:
    """n tasks, the first ``passed`` of them solved."""
    return [1.0] * passed + [0.0] * (n - passed)


def test_ci_contains_the_mean_and_lies_in_0_1() -> None:
    values = pattern(20, 7)
    low, high = bootstrap_ci(values)
    assert 0.0 <= low < 0.35 < high <= 1.0


def test_ci_narrows_with_more_tasks() -> None:
    low20, high20 = bootstrap_ci(pattern(20, 7))
    low200, high200 = bootstrap_ci(pattern(200, 70))
    assert high200 - low200 < (high20 - low20) / 2  # ~ 1/sqrt(10) as wide
    assert low200 < 0.35 < high200


def test_ci_is_deterministic_given_the_seed() -> None:
    values = [0.0, 0.25, 1.0, 0.5, 0.0, 1.0, 0.75, 0.0, 0.0, 1.0]
    assert bootstrap_ci(values, seed=3) == bootstrap_ci(values, seed=3)
    wide = bootstrap_ci(values, level=0.99)
    narrow = bootstrap_ci(values, level=0.5)
    assert wide[0] <= narrow[0] and narrow[1] <= wide[1]


def test_ci_of_zero_one_or_constant_items_is_the_point() -> None:
    assert bootstrap_ci([]) == (0.0, 0.0)
    assert bootstrap_ci([0.4]) == (0.4, 0.4)
    assert bootstrap_ci([1.0] * 5) == (1.0, 1.0)
    with pytest.raises(ValueError):
        bootstrap_ci([0.0, 1.0], level=1.0)


def test_task_scores_is_the_fraction_of_passed_samples() -> None:
    pass_lists = {"mbpp/1": [True], "mbpp/2": [True, False, False, True], "mbpp/3": [False, False],
                  "mbpp/4": []}
    assert task_scores(pass_lists) == {"mbpp/1": 1.0, "mbpp/2": 0.5, "mbpp/3": 0.0, "mbpp/4": 0.0}
    assert task_scores({}) == {}


def test_paired_difference_detects_a_clear_improvement() -> None:
    ids = [f"mbpp/{i}" for i in range(20)]
    a = dict(zip(ids, pattern(20, 2), strict=True))
    b = dict(zip(ids, pattern(20, 17), strict=True))  # 15 more passed, none lost
    d = paired_difference(a, b)
    assert isinstance(d, Difference)
    assert d.tasks == 20
    assert d.difference == pytest.approx(0.75)
    assert 0.0 < d.ci_low <= 0.75 <= d.ci_high
    assert d.verdict == "better"
    assert paired_difference(b, a).verdict == "worse"


def test_paired_difference_of_identical_inputs_is_no_difference() -> None:
    ids = [f"t{i}" for i in range(20)]
    a = dict(zip(ids, pattern(20, 9), strict=True))
    d = paired_difference(a, dict(a))
    assert (d.difference, d.ci_low, d.ci_high, d.verdict) == (0.0, 0.0, 0.0, "no difference")


def test_paired_difference_pairs_tasks_and_sees_small_noisy_changes_as_none() -> None:
    ids = [f"t{i}" for i in range(20)]
    a = dict(zip(ids, pattern(20, 6), strict=True))
    b = dict(a)
    b["t0"], b["t10"], b["t11"] = 0.0, 1.0, 1.0  # one lost, two gained: +1 net
    d = paired_difference(a, b)
    assert d.difference == pytest.approx(0.05)
    assert d.ci_low <= 0.0 <= d.ci_high
    assert d.verdict == "no difference"


def test_paired_difference_uses_only_shared_tasks() -> None:
    a = {"x": 0.0, "y": 0.0, "only-a": 1.0}
    b = {"x": 1.0, "y": 1.0, "only-b": 0.0}
    d = paired_difference(a, b)
    assert d.tasks == 2 and d.difference == 1.0
    with pytest.raises(ValueError, match="share no tasks"):
        paired_difference({"x": 1.0}, {"y": 1.0})


def test_verdict_needs_the_interval_to_exclude_zero() -> None:
    assert verdict_for(0.01, 0.2) == "better"
    assert verdict_for(-0.2, -0.01) == "worse"
    assert verdict_for(-0.01, 0.2) == "no difference"
    assert verdict_for(0.0, 0.2) == "no difference"
