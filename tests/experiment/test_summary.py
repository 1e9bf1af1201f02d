"""summary.md rendered from hand-made records."""

from __future__ import annotations

from service.experiment.config import ExperimentConfig
from service.experiment.results import StudyResults
from service.experiment.summary import render_summary, settings_line
from tests.experiment.conftest import full_results, load


def test_render_summary_without_stored_figures() -> None:
    text = render_summary(load(full_results()))
    assert "| leti-r1/mbpp vs base/mbpp | base/mbpp | leti-r1/mbpp |" in text
    assert "![" not in text


def test_the_failure_classes_table() -> None:
    results = full_results()
    task = next(iter(results["evaluations"][0]["tasks"].values()))
    task["statuses"], task["error_types"] = ["error"], ["NameError"]
    task["passed"] = [False]
    summary = render_summary(load(results))
    assert "## How the evaluated programs ended" in summary
    assert "| Evaluation | Programs | passed | wrong answer | NameError |" in summary
    assert "| base/mbpp | 20 | 1 | 18 | 1 |" in summary


def test_the_settings_line_names_a_run_sized_by_its_data() -> None:
    config = ExperimentConfig.model_validate(
        {"name": "x", "training": {"epochs": 2.0, "max_steps": 40, "grad_accum": 2}})
    line = settings_line(StudyResults(config=config.model_dump(mode="json")))
    assert "2.0 epochs/round over accumulate data from base (at most 40 steps) (batch 2 x 2" \
        in line
