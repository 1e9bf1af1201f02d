"""The experiment report: results.json with its figures, the plots and summary.md, written from
hand-made records of finished, partial and empty runs."""

from __future__ import annotations

import json
from pathlib import Path

from service.experiment.plots import PLOTS
from service.experiment.report import write_report
from service.experiment.results import StudyResults
from tests.experiment.conftest import full_results, load, partial_results, round_record

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_write_report_writes_json_plots_and_summary(tmp_path: Path) -> None:
    results = load(full_results())
    summary = write_report(results, tmp_path / "out")
    out = tmp_path / "out"
    assert summary == out / "summary.md"

    stored = json.loads((out / "results.json").read_text())
    assert stored["figures"]["pass_at_1"][0]["key"] == "base/mbpp"
    assert results.figures is not None
    assert stored["figures"] == json.loads(json.dumps(results.figures.to_json()))
    assert set(stored) == {*full_results(), "figures"}
    assert stored["evaluations"] == full_results()["evaluations"]  # as read, nothing added
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
    summary = write_report(load(partial_results()), tmp_path)
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
    summary = write_report(load({"schema": 1, "name": "empty"}), tmp_path)
    text = summary.read_text()
    assert "No evaluations yet." in text and "No timings yet." in text
    assert not list(tmp_path.glob("*.png"))
    stored = json.loads((tmp_path / "results.json").read_text())
    assert set(stored) == {"schema", "name", "figures"}  # nothing the file lacked is added


def test_rewriting_a_report_removes_stale_plots(tmp_path: Path) -> None:
    write_report(load(full_results()), tmp_path)
    assert (tmp_path / "ablations.png").exists()
    write_report(load(partial_results()), tmp_path)
    assert not (tmp_path / "ablations.png").exists()


def test_a_round_cut_short_renders(tmp_path: Path) -> None:
    results = partial_results()
    cut = round_record(1)
    cut.update(training=None, gate=None, candidate=None, serving_after=None, timings_s=None)
    results["rounds"] = [cut]
    records = load(results)
    text = write_report(records, tmp_path).read_text()
    assert "| 1 | 12 | 96 | 3 | - | - | base | - | - | - | - | - | - | base |" in text
    assert (tmp_path / "statuses.png").read_bytes().startswith(PNG_MAGIC)
    assert records.figures is not None
    assert [t.label for t in records.figures.timings] == ["base", "r1"]


def test_a_round_shows_its_pool_pass_rate_data_and_paired_gate(tmp_path: Path) -> None:
    results = partial_results()
    record = round_record(1)
    record.update(pool_pass_rate=0.25, trained_on=40, candidate="policy-v1",
                  serving_after="base",
                  gate={"decision": "reject", "candidate_pass_at_1": 0.1,
                        "serving_pass_at_1": 0.2, "ci_low": -0.15, "ci_high": -0.05,
                        "warning": "the gate's 10 problems cannot show a drop smaller than 4"})
    results["rounds"] = [record]
    text = write_report(load(results), tmp_path).read_text()
    assert "| 25.0% | 40 | base |" in text
    assert "| reject | 10.0% | 20.0% | [-15.0, -5.0] pp | base |" in text
    assert "Gate warning: the gate's 10 problems cannot show a drop smaller than 4" in text


def test_a_report_of_records_the_study_built_reads_back(tmp_path: Path) -> None:
    write_report(StudyResults(name="new"), tmp_path)
    again = StudyResults.from_json(json.loads((tmp_path / "results.json").read_text()))
    assert again.name == "new" and again.figures is not None and again.figures.pass_at_1 == []
