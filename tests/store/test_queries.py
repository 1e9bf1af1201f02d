"""The queries the loop, the benchmarks and the dashboard read through (tasks, samples,
triples, training runs, adapters, promotions), on a real SQLite store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from service.store import lineage, tasks, triples
from service.store.db import Store
from service.store.models import PromotionRow, TaskRow
from service.store.samples import (
    ExecutionRecord,
    FeedbackRecord,
    NewSample,
    add_execution,
    add_feedback,
    add_samples,
    count_samples,
    recent_failures,
)

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def _task(task_id: str, kind: str = "mbpp", split: str | None = "train") -> TaskRow:
    return TaskRow(id=task_id, kind=kind, instruction=f"Solve {task_id}.",
                   tests=["assert f() == 1"], setup="", entry_point="f", reference=None,
                   split=split)


def _execution(status: str, error_type: str | None = None) -> ExecutionRecord:
    good = status == "passed"
    return ExecutionRecord(status=status, feedback="ok" if good else f"{status}!",
                           reward="good" if good else "bad", score=float(good), tests_passed=0,
                           tests_total=1, duration_ms=1.0,
                           outcome={"status": status, "error_type": error_type},
                           backend="local")


@pytest.fixture
def store(tmp_path: Path) -> Store:
    store = Store(f"sqlite:///{tmp_path}/leti.db")
    store.migrate()
    with store.write() as session:
        tasks.add_tasks(session, [_task("mbpp/2"), _task("mbpp/10"), _task("mbpp/1"),
                                  _task("mbpp/511", split="validation"),
                                  _task("builtin/1"), _task("builtin/2", split="validation"),
                                  _task("humaneval/HumanEval/0", "humaneval", "test")])
    return store


def _run(store: Store, *, status: str, upto: int, adapter: str | None = None) -> str:
    with store.write() as session:
        run = lineage.start_training_run(session, parent_adapter_id=None, data_path="d.jsonl",
                                         data_sha256="00" * 32, triples_from=1,
                                         triples_to=upto, config={})
        row = None
        if adapter is not None:
            row = lineage.register_adapter(session, name=adapter, path=f"/a/{adapter}",
                                           base_model="smol", parent_id=None)
        if status != "running":
            lineage.finish_training_run(session, run.id, adapter=row, metrics=None,
                                        error="boom" if status == "failed" else None)
    return run.id


# -- tasks -----------------------------------------------------------------------------------
def test_task_ids_by_split_and_by_pattern(store: Store) -> None:
    with store.read() as session:
        assert sorted(tasks.split_task_ids(session, "mbpp", "train")) == \
            ["builtin/1", "mbpp/1", "mbpp/10", "mbpp/2"]
        assert sorted(tasks.split_task_ids(session, "mbpp", "validation")) == \
            ["builtin/2", "mbpp/511"]
        assert tasks.split_task_ids(session, "humaneval", "train") == []
        assert tasks.task_ids_like(session, "builtin/%") == {"builtin/1", "builtin/2"}
        assert tasks.task_ids_like(session, "nothing/%") == set()


def test_tasks_of_kind_with_and_without_a_split(store: Store) -> None:
    with store.read() as session:
        assert {t.id for t in tasks.tasks_of_kind(session, "mbpp", "validation")} == \
            {"mbpp/511", "builtin/2"}
        assert len(tasks.tasks_of_kind(session, "mbpp")) == 6
        assert [t.id for t in tasks.tasks_of_kind(session, "humaneval")] == \
            ["humaneval/HumanEval/0"]
        assert tasks.tasks_of_kind(session, "user") == []


# -- samples, executions, triples ------------------------------------------------------------
def test_counts_and_recent_failures_newest_first(store: Store) -> None:
    with store.write() as session:
        samples = add_samples(session, [NewSample("mbpp/1", f"p{i}", origin="generated",
                                                  adapter="v1") for i in range(4)])
        rows = [add_execution(session, s.id, _execution(status))
                for s, status in zip(samples, ["failed", "passed", "error", "timeout"],
                                     strict=True)]
        for i, row in enumerate(rows):
            row.created_at = T0 + timedelta(minutes=i)
    with store.read() as session:
        assert count_samples(session) == 4
        newest = recent_failures(session, 10)
        assert [(e.status, s.program) for e, s in newest] == \
            [("timeout", "p3"), ("error", "p2"), ("failed", "p0")]
        assert all(e.sample_id == s.id and e.reward == "bad" for e, s in newest)
        assert [e.status for e, _ in recent_failures(session, 1)] == ["timeout"]


def test_count_triples_by_window_and_mark(store: Store) -> None:
    with store.write() as session:
        train, held = add_samples(session, [NewSample("mbpp/1", "a", origin="generated"),
                                            NewSample("mbpp/511", "b", origin="generated")])
        add_execution(session, train.id, _execution("passed"))
        add_execution(session, held.id, _execution("failed"))
        add_execution(session, train.id, _execution("failed"))
    with store.read() as session:
        first = triples.last_id(session) - 2
        assert triples.count_triples(session) == 3
        assert triples.count_triples(session, trainable=True) == 2
        assert triples.count_triples(session, trainable=False) == 1
        assert triples.count_triples(session, after=first, trainable=True) == 1
        assert triples.count_triples(session, after=first + 2) == 0


def test_with_outcomes_joins_the_sandbox_outcome_in_id_order(store: Store) -> None:
    with store.write() as session:
        a, b, c = add_samples(session, [NewSample("mbpp/1", "a", origin="generated"),
                                        NewSample("mbpp/2", "b", origin="submitted"),
                                        NewSample("mbpp/511", "c", origin="generated")])
        add_execution(session, a.id, _execution("error", "NameError"))
        add_feedback(session, b.id, FeedbackRecord(raw={}, label="bad", score=0.0, text="no"))
        add_execution(session, c.id, _execution("failed"))  # held out
    with store.read() as session:
        rows = triples.with_outcomes(session, triples.TripleFilter(trainable=True))
        assert [t.id for t, *_ in rows] == sorted(t.id for t, *_ in rows)
        assert [(s.program, k.id, t.source, o) for t, s, k, o in rows] == [
            ("a", "mbpp/1", "sandbox", {"status": "error", "error_type": "NameError"}),
            ("b", "mbpp/2", "external", None)]
        everything = triples.with_outcomes(session, triples.TripleFilter())
        assert [s.program for _, s, _, _ in everything] == ["a", "b", "c"]
        upto = triples.with_outcomes(session, triples.TripleFilter(upto=rows[0][0].id))
        assert [s.program for _, s, _, _ in upto] == ["a"]


# -- training runs and adapters --------------------------------------------------------------
def test_training_run_queries(store: Store) -> None:
    with store.read() as session:
        assert lineage.last_trained_triple(session) == 0
        assert lineage.count_training_runs(session) == 0
    done = _run(store, status="done", upto=5, adapter="policy-v1")
    _run(store, status="failed", upto=9)
    running = _run(store, status="running", upto=12)
    _run(store, status="done", upto=7, adapter="policy-v2")
    with store.read() as session:
        assert lineage.last_trained_triple(session) == 7  # the largest window a done run had
        assert lineage.count_training_runs(session) == 4
        assert lineage.count_training_runs(session, status="failed") == 1
        assert [r.id for r in lineage.unfinished_training_runs(session)] == [running]
        run = lineage.get_training_run(session, done)
        assert run is not None and run.output_adapter_id == "policy-v1"
        assert lineage.get_training_run(session, "nope") is None
        assert lineage.adapter_runs(session) == {"policy-v1": done,
                                                 "policy-v2": lineage.produced_by(
                                                     session, "policy-v2").id}  # type: ignore[union-attr]


def test_adapter_queries(store: Store) -> None:
    with store.write() as session:
        for i, name in enumerate(["policy-v1", "policy-v3", "other-v2"]):
            lineage.register_adapter(session, name=name, path=f"/a/{name}", base_model="smol",
                                     parent_id=None).created_at = T0 + timedelta(minutes=i)
    with store.read() as session:
        assert sorted(lineage.adapter_ids(session)) == ["other-v2", "policy-v1", "policy-v3"]
        assert [a.id for a in lineage.list_adapters(session)] == \
            ["other-v2", "policy-v3", "policy-v1"]
        assert lineage.count_adapters(session) == 3
        row = lineage.get_adapter(session, "policy-v3")
        assert row is not None and row.path == "/a/policy-v3"
        assert lineage.get_adapter(session, "policy-v9") is None


# -- promotion decisions ---------------------------------------------------------------------
def _decisions(store: Store) -> list[PromotionRow]:
    with store.write() as session:
        for name in ("policy-v1", "policy-v2"):
            lineage.register_adapter(session, name=name, path=f"/a/{name}", base_model="smol",
                                     parent_id=None)
    made = [("policy-v1", "promote"), ("policy-v2", "promote"), ("policy-v1", "rollback"),
            ("policy-v2", "reject")]
    rows = []
    for i, (name, decision) in enumerate(made):
        with store.write() as session:
            row = lineage.decide(session, name, decision, decision)  # type: ignore[arg-type]
            row.created_at = T0 + timedelta(minutes=i)
            rows.append(row)
    return rows


def test_list_decisions_in_time_order_or_newest_first(store: Store) -> None:
    rows = _decisions(store)
    with store.read() as session:
        assert [r.id for r in lineage.list_decisions(session)] == [r.id for r in rows]
        assert [r.id for r in lineage.list_decisions(session, newest_first=True)] == \
            [r.id for r in rows[::-1]]
        assert [r.id for r in lineage.list_decisions(session, newest_first=True, limit=2)] == \
            [rows[3].id, rows[2].id]


def test_last_serving_decision_ignores_rejections(store: Store) -> None:
    rows = _decisions(store)
    with store.read() as session:
        v1 = lineage.last_serving_decision(session, "policy-v1")
        assert v1 is not None and v1.id == rows[2].id and v1.previous_adapter_id == "policy-v2"
        v2 = lineage.last_serving_decision(session, "policy-v2")  # its rejection does not count
        assert v2 is not None and v2.id == rows[1].id and v2.previous_adapter_id == "policy-v1"
        assert lineage.last_serving_decision(session, None) is None
        assert lineage.last_serving_decision(session, "policy-v9") is None


def test_rollback_to_base_rejects_the_adapter_and_records_it(store: Store) -> None:
    _decisions(store)
    with store.write() as session:
        adapter = lineage.get_adapter(session, "policy-v1")
        assert adapter is not None and adapter.state == "serving"
        decision = lineage.rollback_to_base(session, adapter)
        assert decision.id is not None and decision.created_at is not None  # flushed
    with store.read() as session:
        assert lineage.serving_adapter(session) is None
        assert lineage.get_adapter(session, "policy-v1").state == "rejected"  # type: ignore[union-attr]
        newest = lineage.list_decisions(session, newest_first=True, limit=1)[0]
        assert (newest.adapter_id, newest.previous_adapter_id, newest.decision,
                newest.reason) == ("policy-v1", None, "rollback",
                                   "rolled back from policy-v1 to the base model")
