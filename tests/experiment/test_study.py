"""The study end to end on a tiny random model: every phase runs through the real store,
sandbox, generator, trainer process and gate; a second run of the same config gives the same
figures (the reproducibility the experiment promises); a partial run resumes."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from service.experiment.config import ExperimentConfig, ExperimentConfigError, load_config
from service.experiment.results import StudyResults
from service.experiment.study import Study, StudyError
from tests.api.conftest import tiny_model_dir  # noqa: F401 - the fixture, reused

pytestmark = pytest.mark.slow


def tiny_config(mbpp_path: Path, model: Path, **overrides: Any) -> ExperimentConfig:
    raw: dict[str, Any] = {
        "name": "tiny", "seed": 3,
        "model": {"name": str(model), "threads": 1, "batch_size": 8},
        "sandbox": {"workers": 2},
        "data": {"mbpp_path": str(mbpp_path), "train_problems": 4, "test_problems": 3,
                 "humaneval_problems": 2},
        "sampling": {"n": 2, "temperature": 1.0, "max_new_tokens": 16},
        "evaluation": {"n": 2, "temperature": 0.8, "ks": [1, 2], "max_new_tokens": 16},
        "loop": {"rounds": 2, "problems_per_round": 2},
        "training": {"feedback_steps": 2, "batch_size": 1, "max_length": 512,
                     "code_ratio": 1.0},
        "gate": {"problems": 2, "margin": 1.0},
        "ablations": [{"name": "binary", "objective": "binary"},
                      {"name": "no-corpus", "code_ratio": 0.0},
                      {"name": "ceiling", "data": "references"}],
    }
    raw.update(overrides)
    return ExperimentConfig.model_validate(raw)


@pytest.fixture(autouse=True)
def _keep_truncated(monkeypatch: pytest.MonkeyPatch) -> None:
    """The tiny random model's programs all run into the token limit: train on them anyway
    (the study's settings and its trainer processes read LETI_TRAIN_TRUNCATED)."""
    monkeypatch.setenv("LETI_TRAIN_TRUNCATED", "keep")


def figures_of(results: StudyResults) -> dict[str, Any]:
    """What must repeat: every evaluation's per-task outcomes and every round's counts."""
    return {"evaluations": {e.key: e.tasks for e in results.evaluations},
            "rounds": [(r.problems, r.statuses, r.gate.decision) for r in results.rounds]}


def test_study_runs_every_phase_and_repeats(tmp_path: Path, mbpp_path: Path,
                                             tiny_model_dir: Path,  # noqa: F811
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from service.experiment import study as study_module
    from service.loop import rounds

    calls = {"collect_round": 0, "train_and_gate": 0}
    for name in calls:  # the study's round is the loop's round: the same two functions
        real = getattr(rounds, name)

        def spy(*args: Any, _real: Any = real, _name: str = name, **kwargs: Any) -> Any:
            calls[_name] += 1
            return _real(*args, **kwargs)
        monkeypatch.setattr(rounds, name, spy)
    # and no second copy of the round's steps in the study
    assert not {"prepare_run", "finish_run", "collect_round"} & set(vars(study_module))

    config = tiny_config(mbpp_path, tiny_model_dir)
    first = asyncio.run(Study(config, tmp_path / "a").run())
    assert calls == {"collect_round": 2, "train_and_gate": 2}

    assert first.phases_done == ["baseline", "round-1", "ablation-binary",
                                 "ablation-no-corpus", "ablation-ceiling", "round-2", "final"]
    keys = [e.key for e in first.evaluations]
    assert keys == ["base/mbpp", "base/humaneval", "leti-r1/mbpp", "binary-r1/mbpp",
                    "no-corpus-r1/mbpp", "ceiling-r1/mbpp", "leti-r2/mbpp", "leti-r2/humaneval"]
    base = first.evaluations[0]
    assert list(base.tasks) == ["mbpp/11", "mbpp/12", "mbpp/13"]
    assert all(len(t.passed) == 2 for t in base.tasks.values())
    assert set(base.pass_at_k) == {"pass@1", "pass@2"}

    r1, r2 = first.rounds
    assert r1.problems == ["mbpp/601", "mbpp/602"] and r2.problems == ["mbpp/603", "mbpp/604"]
    assert r1.samples == 4 and sum(r1.statuses.values()) == 4
    assert r1.pool == 4 and r1.passed is not None and r1.pool_pass_rate == r1.passed / 4
    assert r1.selection is not None and r1.selection["policy"] == "accumulate"
    assert r1.trained_on is not None and r1.trained_on >= 1
    assert r1.gate.tasks == 2 and "table" not in r1.gate.to_json()
    assert r1.adapter_sampled is None  # the base model samples round 1
    assert r1.gate.decision == "promote"  # margin 1.0: anything passes the gate
    assert r2.adapter_sampled == r1.candidate  # the promoted adapter samples round 2
    assert r1.training.steps == 3 and r1.training.feedback_steps == 2  # F C F
    assert r1.training.precision in {"fp32", "bf16-frozen"}  # what the run computed in
    assert set(r1.timings_s) == {"sampling", "execution", "training", "evaluation", "gate"}
    ablations = {a.name: a for a in first.ablations}
    assert ablations["binary"].steps == 3  # same code ratio as the main arm
    assert ablations["no-corpus"].steps == 2  # the same two feedback steps, no code step
    ceiling = ablations["ceiling"]  # round 1's steps on its problems' passing references
    assert ceiling.steps == 3 and ceiling.compare_to == "base/mbpp"
    assert ceiling.references == {"problems": 2, "kept": 2, "failed": {}}
    assert ablations["binary"].references is None and "references" not in \
        ablations["binary"].to_json()
    written = json.loads((tmp_path / "a" / "results.json").read_text())
    assert written == json.loads(json.dumps(first.to_json(), default=str))  # what it returned
    assert base.programs_file == "programs/base--mbpp.jsonl"
    saved = [json.loads(line) for line in
             (tmp_path / "a" / base.programs_file).read_text().splitlines()]
    assert [p["task_id"] for p in saved] == [t for t in base.tasks for _ in range(2)]
    assert [p["status"] for p in saved] == [s for t in base.tasks.values() for s in t.statuses]
    assert all(isinstance(p["program"], str) and p["feedback"] for p in saved)

    again = asyncio.run(Study(config, tmp_path / "b").run())
    assert figures_of(again) == figures_of(first)


def test_a_study_stops_after_a_phase_resumes_and_refuses_another_config(
        tmp_path: Path, mbpp_path: Path, tiny_model_dir: Path) -> None:  # noqa: F811
    config = tiny_config(mbpp_path, tiny_model_dir,
                         loop={"rounds": 1, "problems_per_round": 1, "marker_check": True},
                         ablations=[])
    out = tmp_path / "run"
    with pytest.raises(StudyError, match="no phase 'round-9'"):
        asyncio.run(Study(config, out, stop_after="round-9").run())
    partial = asyncio.run(Study(config, out, stop_after="baseline").run())
    assert partial.phases_done == ["baseline"]
    assert partial.environment.finished_at is None
    base = partial.evaluations
    first = asyncio.run(Study(config, out).run())  # resumes after the baseline
    assert first.phases_done == ["baseline", "round-1", "final"]
    assert first.evaluations[:2] == base
    keys = [e.key for e in first.evaluations]  # the marker check on the promoted adapter
    assert keys[-2:] == ["leti-r1/humaneval", "bad-r1/mbpp"]
    assert first.evaluations[-1].marker == "bad"
    marker = next(a for a in first.ablations if a.name == "marker")
    assert (marker.evaluation, marker.compare_to) == ("bad-r1/mbpp", "leti-r1/mbpp")
    assert set(marker.to_json()) == {"name", "objective", "marker", "evaluation", "compare_to",
                                     "data_round", "training", "timings_s"}
    assert first.environment.finished_at is not None
    stamp = (out / "results.json").stat().st_mtime_ns
    second = asyncio.run(Study(config, out).run())
    assert second.phases_done == first.phases_done
    assert second.evaluations == first.evaluations
    assert (out / "results.json").stat().st_mtime_ns >= stamp
    other = tiny_config(mbpp_path, tiny_model_dir, seed=4,
                        loop={"rounds": 1, "problems_per_round": 1}, ablations=[])
    with pytest.raises(StudyError, match="another config"):
        asyncio.run(Study(other, out).run())


def test_config_errors_name_the_setting(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "x"\n[sampling]\nn = 0\ntemprature = 1.0\n')
    with pytest.raises(ExperimentConfigError) as info:
        load_config(bad)
    assert "sampling.n" in str(info.value) and "sampling.temprature" in str(info.value)
    (tmp_path / "notoml.toml").write_text("name = \n")
    with pytest.raises(ExperimentConfigError, match="not valid TOML"):
        load_config(tmp_path / "notoml.toml")
    with pytest.raises(ExperimentConfigError, match="no config file"):
        load_config(tmp_path / "missing.toml")


EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"


@pytest.mark.parametrize("name", sorted(p.stem for p in EXPERIMENTS.glob("*.toml")))
def test_shipped_configs_load(name: str) -> None:
    config = load_config(EXPERIMENTS / f"{name}.toml")
    assert config.name == name
    if name in ("cpu-small", "cpu-rounds", "gpu"):  # the follow-ups measure one lever each
        assert "binary" in {a.name for a in config.ablations}
    if name in ("cpu-rounds", "cpu-rounds-wide", "cpu-rounds-serving", "gpu"):  # >= 4 rounds
        assert config.loop.rounds >= 4 and config.loop.marker_check
    if name != "cpu-small":  # issue 16's design: rounds on a re-sampled pool, paired gate
        assert config.loop.problems_per_round == config.data.train_problems  # the whole pool
        assert config.data.test_problems >= 200 and config.data.humaneval_problems == 164
        assert (config.evaluation.n, config.evaluation.temperature) == (1, 0.0)  # greedy
        assert (config.gate.problems, config.gate.temperature) == (90, 0.0)
        assert config.training.selection == "accumulate" and config.training.code_ratio == 1.0
        # the default, measured against continuing the serving adapter (cpu-rounds-serving)
        assert config.training.init == ("serving" if name == "cpu-rounds-serving" else "base")
    if name == "gpu":  # LETI's scale
        assert config.sampling.n == 128 and config.sampling.temperature == 1.0
        assert config.data.train_problems == 374 and config.model.backend == "vllm"
        assert config.training.epochs == 3.0
    json.dumps(config.model_dump(mode="json"))
