"""The report's numbers, computed from hand-made records."""

from __future__ import annotations

import pytest

from service.experiment.figures import figures
from tests.experiment.conftest import full_results, load


def test_figures_pass_at_1_with_intervals() -> None:
    figs = figures(load(full_results()))
    rows = {r.key: r for r in figs.pass_at_1}
    assert list(rows) == ["base/mbpp", "base/humaneval", "leti-r1/mbpp", "leti-r2/mbpp",
                          "leti-r2/humaneval", "binary-r1/mbpp"]
    r2 = rows["leti-r2/mbpp"]
    assert (r2.arm, r2.round, r2.benchmark, r2.feedback_steps, r2.tasks) == (
        "leti", 2, "mbpp", 8, 20)
    assert r2.value == pytest.approx(0.85)
    assert r2.ci_low < 0.85 < r2.ci_high
    assert figures(load(full_results())) == figs  # deterministic


def test_figures_comparisons_and_verdicts() -> None:
    comps = {(c.a, c.b): c for c in figures(load(full_results())).comparisons}
    assert set(comps) == {
        ("base/mbpp", "leti-r1/mbpp"),
        ("base/mbpp", "leti-r2/mbpp"),
        ("base/humaneval", "leti-r2/humaneval"),  # the last round's HumanEval
        ("leti-r1/mbpp", "binary-r1/mbpp"),  # the no-corpus ablation has no evaluation
    }
    r2 = comps[("base/mbpp", "leti-r2/mbpp")]
    assert r2.difference == pytest.approx(0.75) and r2.verdict == "better"
    assert r2.tasks == 20 and r2.ci_low > 0
    assert comps[("base/humaneval", "leti-r2/humaneval")].verdict == "no difference"
    binary = comps[("leti-r1/mbpp", "binary-r1/mbpp")]
    assert binary.name == "binary" and binary.verdict == "no difference"


def test_figures_statuses_and_timings() -> None:
    figs = figures(load(full_results()))
    s1 = figs.statuses[0]
    assert s1.round == 1 and s1.counts["passed"] == 3
    assert sum(s1.fractions.values()) == pytest.approx(1.0)
    assert s1.fractions["failed"] == pytest.approx(40 / 96)
    labels = [t.label for t in figs.timings]
    assert labels == ["base", "r1", "r2", "binary", "no-corpus"]
    assert figs.timings[0].phases == {"evaluation": 240.0}
    assert figs.timings[1].total == pytest.approx(573.0)


def test_failure_classes_count_each_evaluation_on_the_same_problems() -> None:
    results = full_results()
    task = next(iter(results["evaluations"][0]["tasks"].values()))
    task["statuses"], task["error_types"] = ["error"], ["NameError"]
    task["passed"] = [False]
    rows = {r.key: r for r in figures(load(results)).failure_classes}
    base = rows["base/mbpp"]
    assert base.programs == 20
    assert base.counts == {"NameError": 1, "passed": 1, "wrong answer": 18}


def test_older_records_get_their_key_samples_and_passed_derived() -> None:
    results = full_results()
    del results["evaluations"][0]["key"]  # files from before evaluations had keys
    del results["rounds"][0]["samples"], results["rounds"][0]["passed"]
    figs = figures(load(results))
    assert figs.pass_at_1[0].key == "base-r0/mbpp"
    assert (figs.statuses[0].samples, figs.statuses[0].passed) == (96, 3)
