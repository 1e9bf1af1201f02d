"""What a training run learns from, on a real SQLite store: every passing program of every
round (deduplicated, capped per problem), the new failures (distinct error types first),
truncated failures by the policy, never a held-out problem, and the report that says so."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from service.core.config import Settings
from service.loop import state
from service.loop.selection import normalise_program, select_training_data
from service.loop.training import prepare_run
from service.loop.training_data import NothingToTrain
from service.store import lineage
from service.store.db import Store
from service.store.models import TrainingRunRow, TripleRow
from service.store.samples import (
    ExecutionRecord,
    FeedbackRecord,
    NewSample,
    add_execution,
    add_feedback,
    add_samples,
)


@pytest.fixture
def store(tmp_path: Path) -> Store:
    store = Store(f"sqlite:///{tmp_path / 'leti.db'}")
    store.migrate()
    state.ensure_task_source(store, try_hub=False)  # builtin/1-20 train, 21-30 validation
    return store


def run(store: Store, task_id: str, program: str, status: str = "passed",
        error_type: str | None = None, finish_reason: str | None = "stop") -> int:
    """Store one executed program; returns its triple's id."""
    passed = status == "passed"
    with store.write() as session:
        sample = add_samples(session, [NewSample(task_id, program, origin="generated",
                                                 finish_reason=finish_reason)])[0]
        add_execution(session, sample.id, ExecutionRecord(
            status=status, feedback=f"{status} {error_type or ''}".strip(),
            reward="good" if passed else "bad", score=float(passed), tests_passed=0,
            tests_total=3, duration_ms=1.0, outcome={"error_type": error_type},
            backend="local"))
        session.flush()
        return max(t.id for t in session.query(TripleRow).all())


def select(store: Store, after: int = 0, truncated: str = "drop", max_passing: int = 8,
           max_failures: int = 4):  # type: ignore[no-untyped-def]
    with store.read() as session:
        upto = max(t.id for t in session.query(TripleRow).all())
    return select_training_data(store, after=after, upto=upto, truncated=truncated,
                                max_passing=max_passing, max_failures=max_failures)


def test_normalised_programs_ignore_comments_docstrings_and_layout() -> None:
    a = "def f(x):\n    return x + 1\n"
    b = 'def f(x):  # add one\n    """Adds one."""\n\n    return (x + 1)\n'
    assert normalise_program(a) == normalise_program(b)
    assert normalise_program(a) != normalise_program("def f(x):\n    return x + 2\n")
    assert normalise_program("def f(:\n  pass") == normalise_program("def f(:   pass")


def test_passing_programs_of_every_round_are_kept_once_and_capped(store: Store) -> None:
    first = run(store, "builtin/1", "def f(x):\n    return x + 1\n")
    run(store, "builtin/1", "def f(x):  # again\n    return (x + 1)\n")  # a duplicate
    run(store, "builtin/2", "def f(x):\n    return x + 1\n")  # same text, other problem: kept
    for k in range(4):  # four more distinct passes of problem 1
        run(store, "builtin/1", f"def f(x):\n    y = {k}\n    return x + 1\n")
    window_start = run(store, "builtin/3", "def g(x):\n    return x\n", "failed")
    chosen = select(store, after=window_start - 1, max_passing=3)
    passing = chosen.report["passing"]
    assert (passing["candidates"], passing["duplicates"], passing["over_cap"],
            passing["kept"]) == (7, 1, 2, 4)
    assert passing["from_earlier_windows"] == 7  # all from rounds before this window
    assert chosen.ids[0] == first  # the oldest passes first: a stable set per problem
    per_problem = chosen.report["per_problem"]
    assert per_problem["builtin/1"] == {"passing": 3, "failures": 0}
    assert per_problem["builtin/2"] == {"passing": 1, "failures": 0}
    assert per_problem["builtin/3"] == {"passing": 0, "failures": 1}
    assert chosen.ids == sorted(chosen.ids) and len(chosen.records) == 5


def test_only_new_failures_are_kept_distinct_error_types_first(store: Store) -> None:
    run(store, "builtin/1", "x = 0", "error", "NameError")  # an earlier window's failure
    after = run(store, "builtin/1", "x = 00", "error", "NameError")
    for k in range(3):
        run(store, "builtin/1", f"y = {k}", "error", "NameError")
    for k in range(2):
        run(store, "builtin/1", f"z = {k}", "failed")
    run(store, "builtin/1", "w = (", "syntax_error")
    run(store, "builtin/1", "y = 0", "error", "NameError")  # a repeat of this window's first
    chosen = select(store, after=after, max_failures=3)
    fails = chosen.report["failures"]
    assert fails["candidates"] == 7 and fails["earlier_windows_not_replayed"] == 2
    assert fails["duplicates"] == 1 and fails["kept"] == 3 and fails["over_cap"] == 3
    assert fails["kept_by_error"] == {"NameError": 1, "wrong answer": 1, "SyntaxError": 1}
    assert {r["program"] for r in chosen.records} == {"y = 0", "z = 0", "w = ("}


@pytest.mark.parametrize("policy", ["drop", "mark", "keep"])
def test_truncated_failures_follow_the_policy_and_truncated_passes_stay(store: Store,
                                                                         policy: str) -> None:
    run(store, "builtin/1", "def f():\n    return 1\n", finish_reason="length")
    run(store, "builtin/2", "def f(:\n    return [[[[", "syntax_error", finish_reason="length")
    run(store, "builtin/2", "def f():\n    return 2\n", "failed")
    chosen = select(store, truncated=policy)
    fails = chosen.report["failures"]
    assert chosen.report["passing"]["kept"] == 1  # a cut program that passed is kept
    assert fails["truncated"] == 1
    if policy == "drop":
        assert fails["truncated_dropped"] == 1 and fails["kept"] == 1
        assert all(r["finish_reason"] != "length" or r["reward"] == "good"
                   for r in chosen.records)
    else:  # kept for the trainer's reader to mark (or keep as they are)
        assert fails["truncated_dropped"] == 0 and fails["truncated_kept"] == 1
        assert fails["kept"] == 2


def test_held_out_problems_are_never_selected_however_they_passed(store: Store,
                                                                   tmp_path: Path) -> None:
    validation = state.task_ids(store, "validation")[0]
    run(store, validation, "def f():\n    return 1\n")  # e.g. a submitted reference solution
    run(store, validation, "x = 1", "failed")
    run(store, "builtin/1", "def f():\n    return 1\n")
    chosen = select(store)
    assert {r["task_id"] for r in chosen.records} == {"builtin/1"}
    prepared = prepare_run(store, Settings(_env_file=None, data_dir=tmp_path))  # type: ignore[call-arg]
    data = Path(prepared.command[prepared.command.index("--data") + 1])
    rows = [json.loads(line) for line in data.read_text().splitlines()]
    assert [r["task_id"] for r in rows] == ["builtin/1"]
    with store.read() as session:
        config = session.get(TrainingRunRow, prepared.run_id).config
    assert config["data"]["not_exported"] == {"mbpp validation split": 2}
    assert config["data"]["selection"]["kept"] == 1 and config["data"]["trained_on"] == 1
    report = json.loads(data.with_suffix(".selection.json").read_text())
    assert report == config["data"]["selection"]


def test_runs_accumulate_passes_and_train_on_new_failures(store: Store, tmp_path: Path) -> None:
    """Round after round: a finished run's passing programs are in the next run's data, its
    failures are not; the trigger still counts only new triples."""
    settings = Settings(_env_file=None, data_dir=tmp_path, train_init="serving")  # type: ignore[call-arg]
    run(store, "builtin/1", "def f():\n    return 1\n")
    run(store, "builtin/1", "x = 1", "failed")
    first = prepare_run(store, settings)
    with store.write() as session:
        adapter = lineage.register_adapter(session, name="policy-v1", path=str(tmp_path / "a"),
                                           base_model="m", parent_id=None)
        lineage.finish_training_run(session, first.run_id, adapter=adapter, metrics={},
                                    error=None)
        lineage.decide(session, "policy-v1", "promote", "test", None)
    with pytest.raises(NothingToTrain, match="no new triples"):
        prepare_run(store, settings)
    run(store, "builtin/2", "y = 2", "error", "TypeError")
    second = prepare_run(store, settings)
    data = Path(second.command[second.command.index("--data") + 1])
    rows = [json.loads(line) for line in data.read_text().splitlines()]
    assert [(r["task_id"], r["reward"]) for r in rows] == [("builtin/1", "good"),
                                                           ("builtin/2", "bad")]
    assert "--init-adapter" in second.command  # train_init=serving continues policy-v1
    assert "--init-adapter" not in prepare_run(
        store, Settings(_env_file=None, data_dir=tmp_path)).command  # type: ignore[call-arg]


def test_the_window_policy_trains_on_new_triples_only(store: Store, tmp_path: Path) -> None:
    run(store, "builtin/1", "def f():\n    return 1\n")
    run(store, "builtin/1", "def f():\n    return 1\n")
    prepared = prepare_run(store, Settings(_env_file=None, data_dir=tmp_path,  # type: ignore[call-arg]
                                           train_selection="window"))
    data = Path(prepared.command[prepared.command.index("--data") + 1])
    assert len(data.read_text().splitlines()) == 2  # no dedup: the previous behaviour


def test_heterogeneous_feedback_selection_runs_on_the_selected_file(store: Store,
                                                                    tmp_path: Path) -> None:
    """External feedback joins the selection like sandbox results, and the trainer's own
    threshold and cluster-balanced subset (its --min-score/--keep-fraction) apply on top."""
    from trainer.data import read_triples
    from trainer.selection import SelectionConfig
    from trainer.selection import select as trainer_select

    for task in range(1, 9):
        run(store, f"builtin/{task}", f"def f():\n    return {task}\n")
        run(store, f"builtin/{task}", f"x = {task}", "failed")
    with store.write() as session:
        sample = add_samples(session, [NewSample("builtin/1", "def f():\n    return -1\n",
                                                 origin="submitted")])[0]
        add_feedback(session, sample.id, FeedbackRecord(raw={}, label="bad", score=0.3,
                                                        text="too slow", author="u"))
    settings = Settings(_env_file=None, data_dir=tmp_path, train_keep_fraction=0.5,  # type: ignore[call-arg]
                        train_min_score=0.2)
    prepared = prepare_run(store, settings)
    command = prepared.command
    assert command[command.index("--keep-fraction") + 1] == "0.5"
    assert command[command.index("--min-score") + 1] == "0.2"
    data = Path(command[command.index("--data") + 1])
    triples = read_triples(data)
    assert sum(t.source == "external" for t in triples) == 1 and len(triples) == 17
    kept, report = trainer_select(triples, SelectionConfig(min_score=0.2, keep_fraction=0.5))
    # the 8 failures score 0; of the 8 passes and the external 0.3, half (rounded up) are kept
    assert (report.below_threshold, report.above_threshold) == (8, 9)
    assert len(kept) == report.kept == 5
