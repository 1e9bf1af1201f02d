"""The typed records read every results.json the study has written (several schemas), render
their summaries, and write them back unchanged; records built by the study survive the trip."""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest

from service.experiment.compare import compare_runs
from service.experiment.records import Record
from service.experiment.results import (
    AblationRecord,
    Environment,
    EvaluationRecord,
    GateRecord,
    Machine,
    RoundRecord,
    StudyResults,
    TaskRecord,
    TrainingRecord,
    load_results,
)
from service.experiment.summary import render_summary

RESULTS = Path(__file__).resolve().parents[2] / "docs" / "results"
COMMITTED = sorted(RESULTS.glob("*/results.json"))


def test_there_are_committed_results_of_more_than_one_schema() -> None:
    schemas = {json.loads(p.read_text())["schema"] for p in COMMITTED}
    assert len(COMMITTED) >= 4 and schemas >= {1, 2}


@pytest.mark.parametrize("path", COMMITTED, ids=lambda p: p.parent.name)
def test_a_committed_results_file_loads_renders_and_writes_back_unchanged(path: Path) -> None:
    raw = json.loads(path.read_text())
    results = load_results(path)
    assert not _unknown_keys(results)  # every key of the file has a typed field
    assert results.evaluations and isinstance(results.evaluations[0].tasks, dict)
    assert all(isinstance(t, TaskRecord) for e in results.evaluations for t in e.tasks.values())
    summary = render_summary(results)
    assert summary.startswith(f"# LETI experiment: {results.name}")
    assert "## pass@1" in summary and "| base/mbpp | base |" in summary
    # the same keys in the same order: a --report-only redraw changes nothing it did not compute
    assert json.dumps(results.to_json()) == json.dumps(raw)
    assert compare_runs(results, results)  # a run compares with itself


def test_records_built_by_the_study_survive_json_and_back() -> None:
    results = _built_results()
    text = json.dumps(results.to_json(), indent=2)
    again = StudyResults.from_json(json.loads(text))
    assert again == results
    assert json.dumps(again.to_json(), indent=2) == text


def test_the_json_keys_are_the_ones_the_study_has_always_written() -> None:
    written = _built_results().to_json()
    assert list(written) == ["schema", "name", "config", "environment", "phases_done",
                             "evaluations", "rounds", "ablations"]  # no figures before a report
    assert list(written["environment"]) == ["machine", "versions", "started_at", "finished_at",
                                            "wall_s", "generator"]
    ablation, marker = written["ablations"]
    assert list(ablation) == ["name", "objective", "code_ratio", "feedback_steps", "steps",
                              "data_round", "evaluation", "compare_to", "training", "timings_s"]
    assert set(marker) == {"name", "objective", "marker", "evaluation", "compare_to",
                           "data_round", "training", "timings_s"}
    assert marker["training"] == {}
    schema_2 = json.loads((RESULTS / "cpu-rounds" / "results.json").read_text())
    assert list(written["evaluations"][0]) == list(schema_2["evaluations"][0])
    assert list(written["rounds"][0]) == list(schema_2["rounds"][0])
    assert list(written["rounds"][0]["gate"]) == list(schema_2["rounds"][0]["gate"])


def test_missing_keys_take_defaults_and_unknown_keys_are_kept() -> None:
    raw = {"name": "old", "rounds": [{"round": 1, "gate": None, "later": {"x": 1}}]}
    results = StudyResults.from_json(raw)
    round_ = results.rounds[0]
    assert round_.gate == GateRecord() and round_.training == TrainingRecord()
    assert round_.statuses == {} and round_.samples is None
    assert results.environment.finished_at is None and results.figures is None
    assert round_.json_extra == {"later": {"x": 1}}
    written = results.to_json()
    assert list(written) == ["name", "rounds"]
    assert written["rounds"][0] == {"round": 1, "gate": {}, "later": {"x": 1}}


def _built_results() -> StudyResults:
    """Records as the study builds them (not read from a file)."""
    evaluation = EvaluationRecord(
        key="base/mbpp", arm="base", round=0, benchmark="mbpp", split="test", n=1,
        seed=1234, max_new_tokens=256,
        tasks={"mbpp/11": TaskRecord(passed=[False], statuses=["error"],
                                     error_types=["NameError"])},
        pass_at_k={"pass@1": 0.0}, timings_s={"sampling": 1.5, "execution": 0.25}, wall_s=1.8,
        programs_file="programs/base--mbpp.jsonl")
    training = TrainingRecord.from_json({"steps": 3, "precision": "fp32", "feedback_steps": 2,
                                         "error": None, "step_bound": 40, "init": "base"})
    round_ = RoundRecord(
        round=1, problems=["mbpp/601"], pool=1, samples=2, passed=1, pool_pass_rate=0.5,
        truncated=0, statuses={"passed": 1, "failed": 1}, error_types={"none": 1},
        candidate="policy-v1", adapter_dir="state/adapters/x", data="state/runs/x.jsonl",
        selection={"policy": "accumulate"}, trained_on=2, training=training,
        gate=GateRecord(decision="promote", tasks=2, gained=["mbpp/511"], lost=[]),
        serving_after="policy-v1", timings_s={"sampling": 1.0})
    ablation = AblationRecord(
        name="binary", objective="binary", code_ratio=1.0, feedback_steps=2, steps=3,
        data_round=1, evaluation="binary-r1/mbpp", compare_to="leti-r1/mbpp",
        training=TrainingRecord.from_json({"error": None, "steps": 3}), timings_s={})
    marker = AblationRecord(
        name="marker", marker="bad", evaluation="bad-r1/mbpp", compare_to="leti-r1/mbpp",
        data_round=1, training=TrainingRecord.from_json({}), timings_s={"sampling": 1.0})
    environment = Environment(machine=Machine(cpu="cpu", cores=2), versions={"torch": "2"},
                              started_at="2026-01-01T00:00:00+00:00", wall_s=0.0,
                              generator={"backend": "EmbeddedGenerator"})
    return StudyResults(name="tiny", config={"name": "tiny", "seed": 3},
                        environment=environment, phases_done=["baseline", "round-1"],
                        evaluations=[evaluation], rounds=[round_],
                        ablations=[ablation, marker])


def _unknown_keys(value: Any) -> list[str]:
    """The keys of every record below ``value`` that no field reads."""
    if isinstance(value, Record):
        found = list(value.json_extra)
        for f in fields(value):
            if f.name not in ("json_extra", "json_keys"):
                found += _unknown_keys(getattr(value, f.name))
        return found
    if isinstance(value, list):
        return [k for v in value for k in _unknown_keys(v)]
    if isinstance(value, dict):
        return [k for v in value.values() for k in _unknown_keys(v)]
    return []
