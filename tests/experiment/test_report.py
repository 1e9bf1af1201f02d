"""The experiment report: figures, plots, summary.md and run comparison, on hand-made results."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from service.experiment.report import (
    PLOTS,
    compare_runs,
    figures,
    render_comparison,
    render_summary,
    write_report,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def evaluation(
    arm: str, round_: int, benchmark: str, passed: int, *, n_tasks: int = 20,
    feedback_steps: int | None = 8,
) -> dict[str, Any]:
    """``n_tasks`` tasks with one sample each; the first ``passed`` of them pass."""
    prefix = "HumanEval/" if benchmark == "humaneval" else ""
    tasks = {
        f"{benchmark}/{prefix}{i}": {
            "passed": [i < passed],
            "statuses": ["passed" if i < passed else "failed"],
            "error_types": [None if i < passed else "AssertionError"],
        }
        for i in range(n_tasks)
    }
    key = f"base/{benchmark}" if arm == "base" else f"{arm}-r{round_}/{benchmark}"
    return {
        "key": key, "arm": arm, "round": round_, "feedback_steps": feedback_steps,
        "benchmark": benchmark, "split": "test", "adapter": None if arm == "base" else "policy-v1",
        "n": 1, "temperature": 0.0, "seed": 7, "wall_s": 120.0, "tasks": tasks,
        "pass_at_k": {"pass@1": passed / n_tasks},
    }


def round_record(r: int) -> dict[str, Any]:
    return {
        "round": r, "problems": [f"mbpp/{600 + i}" for i in range(12)], "samples": 96,
        "passed": 3 * r,
        "statuses": {"passed": 3 * r, "failed": 40, "error": 33 - 3 * r, "syntax_error": 20,
                     "timeout": 3},
        "error_types": {"NameError": 10, "AssertionError": 40, "TypeError": 5 + r},
        "adapter_sampled": None if r == 1 else f"policy-v{r - 1}", "candidate": f"policy-v{r}",
        "training": {"steps": 16, "feedback_steps": 8, "loss_first": 1.2, "loss_last": 0.9,
                     "tokens": 12000},
        "gate": {"decision": "promote", "candidate_pass_at_1": 0.1 * r,
                 "serving_pass_at_1": 0.1 * (r - 1), "reason": "better"},
        "serving_after": f"policy-v{r}",
        "timings_s": {"sampling": 100.0, "execution": 3.0, "training": 300.0, "gate": 50.0,
                      "evaluation": 120.0},
    }


def full_results() -> dict[str, Any]:
    return {
        "schema": 1,
        "name": "cpu-small",
        "config": {"model": {"name": "SmolLM2-135M-Instruct", "backend": "embedded"}, "seed": 7,
                   "loop": {"rounds": 2, "problems_per_round": 12}, "sampling": {"n": 4,
                   "temperature": 0.8}, "evaluation": {"n": 1, "temperature": 0.0,
                   "seed": 1234}, "data": {"test_problems": 20, "humaneval_problems": 0}},
        "environment": {
            "machine": {"cpu": "test-cpu", "cores": 2}, "versions": {"torch": "2.13.0"},
            "started_at": "2026-01-01T00:00:00Z", "finished_at": "2026-01-01T02:00:00Z",
            "wall_s": 7200.0,
        },
        "evaluations": [
            evaluation("base", 0, "mbpp", 2, feedback_steps=None),
            evaluation("base", 0, "humaneval", 3, feedback_steps=None),
            evaluation("leti", 1, "mbpp", 10),
            evaluation("leti", 2, "mbpp", 17),  # 15 more than the baseline
            evaluation("leti", 2, "humaneval", 3),  # the same as the baseline
            evaluation("binary", 1, "mbpp", 10),  # same as leti-r1: no difference
        ],
        "rounds": [round_record(1), round_record(2)],
        "ablations": [
            {"name": "binary", "objective": "binary", "code_ratio": 1.0, "feedback_steps": 8,
             "data_round": 1, "evaluation": "binary-r1/mbpp", "compare_to": "leti-r1/mbpp",
             "training": None, "timings_s": {"training": 300.0, "evaluation": 120.0}},
            {"name": "no-corpus", "objective": "leti", "code_ratio": 0.0, "feedback_steps": 8,
             "data_round": 1, "evaluation": "no-corpus-r1/mbpp",  # never evaluated: skipped
             "compare_to": "leti-r1/mbpp", "training": None, "timings_s": {}},
        ],
    }


def partial_results() -> dict[str, Any]:
    results = full_results()
    results["environment"]["finished_at"] = None
    results["evaluations"] = results["evaluations"][:1]
    results["rounds"] = []
    results["ablations"] = []
    return results


def test_figures_pass_at_1_with_intervals() -> None:
    figs = figures(full_results())
    rows = {r["key"]: r for r in figs["pass_at_1"]}
    assert list(rows) == ["base/mbpp", "base/humaneval", "leti-r1/mbpp", "leti-r2/mbpp",
                          "leti-r2/humaneval", "binary-r1/mbpp"]
    r2 = rows["leti-r2/mbpp"]
    assert (r2["arm"], r2["round"], r2["benchmark"], r2["feedback_steps"], r2["tasks"]) == (
        "leti", 2, "mbpp", 8, 20)
    assert r2["value"] == pytest.approx(0.85)
    assert r2["ci_low"] < 0.85 < r2["ci_high"]
    assert figures(full_results()) == figs  # deterministic


def test_figures_comparisons_and_verdicts() -> None:
    comps = {(c["a"], c["b"]): c for c in figures(full_results())["comparisons"]}
    assert set(comps) == {
        ("base/mbpp", "leti-r1/mbpp"),
        ("base/mbpp", "leti-r2/mbpp"),
        ("base/humaneval", "leti-r2/humaneval"),  # the last round's HumanEval
        ("leti-r1/mbpp", "binary-r1/mbpp"),  # the no-corpus ablation has no evaluation
    }
    r2 = comps[("base/mbpp", "leti-r2/mbpp")]
    assert r2["difference"] == pytest.approx(0.75) and r2["verdict"] == "better"
    assert r2["tasks"] == 20 and r2["ci_low"] > 0
    assert comps[("base/humaneval", "leti-r2/humaneval")]["verdict"] == "no difference"
    binary = comps[("leti-r1/mbpp", "binary-r1/mbpp")]
    assert binary["name"] == "binary" and binary["verdict"] == "no difference"


def test_figures_statuses_and_timings() -> None:
    figs = figures(full_results())
    s1 = figs["statuses"][0]
    assert s1["round"] == 1 and s1["counts"]["passed"] == 3
    assert sum(s1["fractions"].values()) == pytest.approx(1.0)
    assert s1["fractions"]["failed"] == pytest.approx(40 / 96)
    labels = [t["label"] for t in figs["timings"]]
    assert labels == ["base", "r1", "r2", "binary", "no-corpus"]
    assert figs["timings"][0]["phases"] == {"evaluation": 240.0}
    assert figs["timings"][1]["total"] == pytest.approx(573.0)


def test_write_report_writes_json_plots_and_summary(tmp_path: Path) -> None:
    results = full_results()
    summary = write_report(results, tmp_path / "out")
    out = tmp_path / "out"
    assert summary == out / "summary.md"

    stored = json.loads((out / "results.json").read_text())
    assert stored["figures"]["pass_at_1"][0]["key"] == "base/mbpp"
    assert stored["figures"] == json.loads(json.dumps(results["figures"]))
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]

    for name in PLOTS:
        data = (out / name).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 1000, name

    text = summary.read_text()
    assert text.startswith("# LETI experiment: cpu-small")
    assert "model `SmolLM2-135M-Instruct` (embedded)" in text
    assert "2 rounds x 12 MBPP train problems x 4 samples at T=0.8" in text
    assert "eval n=1 at T=0.0 on MBPP test 20" in text
    assert "seed 7" in text and "cores 2" in text and "wall 2 h 00 min" in text
    assert "| leti-r2/mbpp | leti | 2 | mbpp | 8 | 20 | 85.0% | [" in text
    assert "| base/mbpp | base | 0 | mbpp | - | 20 | 10.0% |" in text
    assert "+75.0 pp" in text and "**better**" in text and "**no difference**" in text
    assert "| binary | leti-r1/mbpp | binary-r1/mbpp |" in text
    assert "| 2 | 96 | 6 (6.2%) | 40 (41.7%) |" in text  # statuses of round 2
    assert "| r1 | 100.0 | 3.0 | 300.0 | 50.0 | 120.0 | 573.0 |" in text
    for name in PLOTS:
        assert f"]({name})" in text
    assert "Partial run" not in text


def test_partial_results_render(tmp_path: Path) -> None:
    summary = write_report(partial_results(), tmp_path)
    assert (tmp_path / "pass_at_1.png").read_bytes().startswith(PNG_MAGIC)
    assert (tmp_path / "timings.png").read_bytes().startswith(PNG_MAGIC)  # the baseline's
    assert not (tmp_path / "ablations.png").exists()
    assert not (tmp_path / "statuses.png").exists()
    text = summary.read_text()
    assert "Partial run" in text and "(so far)" in text
    assert "| base/mbpp | base | 0 | mbpp | - | 20 | 10.0% |" in text
    assert "No comparisons" in text and "No LETI rounds yet." in text
    assert "](ablations.png)" not in text
    assert json.loads((tmp_path / "results.json").read_text())["figures"]["comparisons"] == []


def test_empty_results_render(tmp_path: Path) -> None:
    summary = write_report({"schema": 1, "name": "empty"}, tmp_path)
    text = summary.read_text()
    assert "No evaluations yet." in text and "No timings yet." in text
    assert not list(tmp_path.glob("*.png"))


def test_rewriting_a_report_removes_stale_plots(tmp_path: Path) -> None:
    write_report(full_results(), tmp_path)
    assert (tmp_path / "ablations.png").exists()
    write_report(partial_results(), tmp_path)
    assert not (tmp_path / "ablations.png").exists()


def test_compare_runs_identical_runs_are_within_noise() -> None:
    a = full_results()
    b = copy.deepcopy(a)
    rows = compare_runs(a, b)
    assert len(rows) == 6
    assert all(r["within_noise"] and r["identical"] and r["difference"] == 0 for r in rows)
    table = render_comparison(rows)
    assert "| leti-r2/mbpp | 85.0% | 85.0% | +0.0 pp |" in table and "**no**" not in table


def test_compare_runs_flags_a_very_different_run() -> None:
    a = full_results()
    b = copy.deepcopy(a)
    b["evaluations"][3] = evaluation("leti", 2, "mbpp", 3)  # 17 -> 3 of 20
    b["evaluations"] = b["evaluations"][:4]  # keys only in a are left out
    rows = {r["key"]: r for r in compare_runs(a, b)}
    assert set(rows) == {"base/mbpp", "base/humaneval", "leti-r1/mbpp", "leti-r2/mbpp"}
    far = rows["leti-r2/mbpp"]
    assert not far["within_noise"] and not far["identical"]
    assert far["difference"] == pytest.approx(-0.7)
    assert rows["base/mbpp"]["within_noise"] and rows["base/mbpp"]["identical"]
    assert "**no**" in render_comparison(list(rows.values()))
    assert "No evaluation" in render_comparison([])


def test_compare_runs_same_score_other_tasks_is_within_noise_not_identical() -> None:
    a = full_results()
    b = copy.deepcopy(a)
    tasks = b["evaluations"][2]["tasks"]
    tasks["mbpp/0"]["passed"], tasks["mbpp/15"]["passed"] = [False], [True]
    row = {r["key"]: r for r in compare_runs(a, b)}["leti-r1/mbpp"]
    assert row["difference"] == 0 and row["within_noise"] and not row["identical"]


def test_render_summary_without_stored_figures() -> None:
    text = render_summary(full_results())
    assert "| leti-r1/mbpp vs base/mbpp | base/mbpp | leti-r1/mbpp |" in text
    assert "![" not in text


def test_a_round_cut_short_renders(tmp_path: Path) -> None:
    results = partial_results()
    cut = round_record(1)
    cut.update(training=None, gate=None, candidate=None, serving_after=None, timings_s=None)
    results["rounds"] = [cut]
    text = write_report(results, tmp_path).read_text()
    assert "| 1 | 12 | 96 | 3 | - | - | base | - | - | - | - | - | - | base |" in text
    assert (tmp_path / "statuses.png").read_bytes().startswith(PNG_MAGIC)
    assert [t["label"] for t in results["figures"]["timings"]] == ["base", "r1"]


def test_failure_classes_count_each_evaluation_on_the_same_problems() -> None:
    results = full_results()
    task = next(iter(results["evaluations"][0]["tasks"].values()))
    task["statuses"], task["error_types"] = ["error"], ["NameError"]
    task["passed"] = [False]
    rows = {r["key"]: r for r in figures(results)["failure_classes"]}
    base = rows["base/mbpp"]
    assert base["programs"] == 20
    assert base["counts"] == {"NameError": 1, "passed": 1, "wrong answer": 18}
    summary = render_summary(results)
    assert "## How the evaluated programs ended" in summary
    assert "| Evaluation | Programs | passed | wrong answer | NameError |" in summary
    assert "| base/mbpp | 20 | 1 | 18 | 1 |" in summary


def test_a_round_shows_its_pool_pass_rate_data_and_paired_gate(tmp_path: Path) -> None:
    results = partial_results()
    record = round_record(1)
    record.update(pool_pass_rate=0.25, trained_on=40, candidate="policy-v1",
                  serving_after="base",
                  gate={"decision": "reject", "candidate_pass_at_1": 0.1,
                        "serving_pass_at_1": 0.2, "ci_low": -0.15, "ci_high": -0.05,
                        "warning": "the gate's 10 problems cannot show a drop smaller than 4"})
    results["rounds"] = [record]
    text = write_report(results, tmp_path).read_text()
    assert "| 25.0% | 40 | base |" in text
    assert "| reject | 10.0% | 20.0% | [-15.0, -5.0] pp | base |" in text
    assert "Gate warning: the gate's 10 problems cannot show a drop smaller than 4" in text


def test_the_settings_line_names_a_run_sized_by_its_data() -> None:
    from service.experiment.config import ExperimentConfig
    from service.experiment.report import _settings_line

    config = ExperimentConfig.model_validate(
        {"name": "x", "training": {"epochs": 2.0, "max_steps": 40, "grad_accum": 2}})
    line = _settings_line({"config": config.model_dump(mode="json")})
    assert "2.0 epochs/round over accumulate data from base (at most 40 steps) (batch 2 x 2" \
        in line
