"""Two runs side by side: the reproducibility check of ``--compare-with``."""

from __future__ import annotations

import copy

import pytest

from service.experiment.compare import compare_runs, render_comparison
from tests.experiment.conftest import evaluation, full_results, load


def test_compare_runs_identical_runs_are_within_noise() -> None:
    a = full_results()
    rows = compare_runs(load(a), load(copy.deepcopy(a)))
    assert len(rows) == 6
    assert all(r.within_noise and r.identical and r.difference == 0 for r in rows)
    table = render_comparison(rows)
    assert "| leti-r2/mbpp | 85.0% | 85.0% | +0.0 pp |" in table and "**no**" not in table


def test_compare_runs_flags_a_very_different_run() -> None:
    a = full_results()
    b = copy.deepcopy(a)
    b["evaluations"][3] = evaluation("leti", 2, "mbpp", 3)  # 17 -> 3 of 20
    b["evaluations"] = b["evaluations"][:4]  # keys only in a are left out
    rows = {r.key: r for r in compare_runs(load(a), load(b))}
    assert set(rows) == {"base/mbpp", "base/humaneval", "leti-r1/mbpp", "leti-r2/mbpp"}
    far = rows["leti-r2/mbpp"]
    assert not far.within_noise and not far.identical
    assert far.difference == pytest.approx(-0.7)
    assert rows["base/mbpp"].within_noise and rows["base/mbpp"].identical
    assert "**no**" in render_comparison(list(rows.values()))
    assert "No evaluation" in render_comparison([])


def test_compare_runs_same_score_other_tasks_is_within_noise_not_identical() -> None:
    a = full_results()
    b = copy.deepcopy(a)
    tasks = b["evaluations"][2]["tasks"]
    tasks["mbpp/0"]["passed"], tasks["mbpp/15"]["passed"] = [False], [True]
    row = {r.key: r for r in compare_runs(load(a), load(b))}["leti-r1/mbpp"]
    assert row.difference == 0 and row.within_noise and not row.identical
