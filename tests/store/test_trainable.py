"""Split hygiene in the store: the one rule, the mark every triple gets when it is stored, the
exports that only read what the rule allows, the window report, and the migration that marks
triples stored before the rule existed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from sandbox.tasks import load_humaneval, load_mbpp
from service.store.db import Store
from service.store.export import export_hf, export_jsonl
from service.store.migrate import downgrade, upgrade
from service.store.models import TripleRow
from service.store.samples import (ExecutionRecord, FeedbackRecord, NewSample, add_execution,
                                   add_feedback, add_samples)
from service.store.tasks import ensure_user_task, sync_catalogue, training_exclusion
from service.store.triples import TripleFilter, window_report

HELD_OUT = ("mbpp/2", "mbpp/11", "mbpp/511", "humaneval/HumanEval/0")


@pytest.mark.parametrize(("kind", "split", "instruction", "why"), [
    ("mbpp", "train", "Add.", None),
    ("user", None, "Add.", None),
    ("mbpp", "validation", "Add.", "mbpp validation split"),
    ("mbpp", "test", "Add.", "mbpp test split"),
    ("mbpp", "prompt", "Add.", "mbpp prompt split"),
    ("mbpp", None, "Add.", "mbpp unknown split"),
    ("humaneval", "test", "def f():", "humaneval (held out)"),
    ("humaneval", "train", "def f():", "humaneval (held out)"),  # HumanEval never trains
    ("user", None, "", "no instruction"),
    ("mbpp", "train", "", "no instruction"),
])
def test_the_rule(kind: str, split: str | None, instruction: str, why: str | None) -> None:
    assert training_exclusion(kind, split, instruction) == why


def _record(passed: bool) -> ExecutionRecord:
    return ExecutionRecord(status="passed" if passed else "failed", feedback="fb",
                           reward="good" if passed else "bad", score=float(passed),
                           tests_passed=0, tests_total=1, duration_ms=1.0, outcome={},
                           backend="local")


@pytest.fixture
def store(tmp_path: Path, mbpp_path: Path) -> Store:
    """MBPP and HumanEval, and for each held-out task and two trainable ones (MBPP train, a
    user task) a passing reference, a failure cut at the token limit and external feedback."""
    store = Store(f"sqlite:///{tmp_path}/leti.db")
    store.migrate()
    with store.write() as session:
        sync_catalogue(session, [*load_mbpp(mbpp_path), *load_humaneval()])
        user = ensure_user_task(session, "Return one.", ["assert f() == 1"])
        for task_id in (*HELD_OUT, "mbpp/601", user.id):
            good, cut = add_samples(session, [
                NewSample(task_id, "reference", origin="submitted"),
                NewSample(task_id, "def f(:\n  f f f f", origin="generated",
                          finish_reason="length")])
            add_execution(session, good.id, _record(True))
            add_execution(session, cut.id, _record(False))
            add_feedback(session, cut.id, FeedbackRecord(raw={}, label="bad", score=0.0,
                                                         text="rambles"))
    return store


def _marks(store: Store) -> dict[str, set[bool]]:
    with store.read() as session:
        rows = session.execute(text(
            "SELECT s.task_id, t.trainable FROM triples t JOIN samples s ON s.id = t.sample_id"))
        marks: dict[str, set[bool]] = {}
        for task_id, trainable in rows:
            marks.setdefault(task_id, set()).add(bool(trainable))
    return marks


def test_every_writer_marks_its_triple_by_the_rule(store: Store) -> None:
    marks = _marks(store)
    assert len(marks) == 6
    for task_id, seen in marks.items():
        assert seen == ({False} if task_id in HELD_OUT else {True}), task_id


def test_exports_hold_only_what_may_be_trained_on_whatever_the_filter(store: Store,
                                                                     tmp_path: Path) -> None:
    assert export_jsonl(store, tmp_path / "all.jsonl") == 6  # 2 trainable tasks x 3 triples
    exported = [json.loads(x) for x in (tmp_path / "all.jsonl").read_text().splitlines()]
    assert {r["task_id"] for r in exported} >= {"mbpp/601"}
    assert not {r["task_id"] for r in exported} & set(HELD_OUT)
    for where in (TripleFilter(task_id="mbpp/511"), TripleFilter(kind="humaneval"),
                  TripleFilter(task_id="mbpp/11", after=0), TripleFilter(trainable=True,
                                                                         source="external")):
        count = export_jsonl(store, tmp_path / "x.jsonl", where)
        assert count == (2 if where.source else 0), where
    with pytest.raises(ValueError, match="held-out triples are never exported"):
        export_jsonl(store, tmp_path / "x.jsonl", TripleFilter(trainable=False))
    assert export_hf(store, tmp_path / "hf", TripleFilter(kind="humaneval")) == 0


def test_the_window_report_says_what_was_left_out_and_why(store: Store) -> None:
    with store.read() as session:
        report = window_report(session, TripleFilter())
        only_mbpp = window_report(session, TripleFilter(kind="mbpp"))
    assert report == {"exported": 6, "truncated_failures": 4,  # 2 sandbox + 2 external
                      "not_exported": {"humaneval (held out)": 3, "mbpp prompt split": 3,
                                       "mbpp test split": 3, "mbpp validation split": 3}}
    assert only_mbpp["exported"] == 3 and "humaneval (held out)" not in only_mbpp["not_exported"]


def _insert_at_0003(store: Store, tasks: list[tuple[str, str, str | None, str]]) -> None:
    """One sample and one triple per task, written with the schema of revision 0003."""
    with store.engine.begin() as conn:
        for task_id, kind, split, instruction in tasks:
            conn.execute(text("INSERT INTO tasks (id, kind, instruction, tests, setup, split, "
                              "created_at) VALUES (:id, :kind, :instruction, '[]', '', :split, "
                              "CURRENT_TIMESTAMP)"),
                         {"id": task_id, "kind": kind, "instruction": instruction,
                          "split": split})
            conn.execute(text("INSERT INTO samples (id, task_id, program, origin, created_at) "
                              "VALUES (:id, :task, 'x = 1', 'submitted', CURRENT_TIMESTAMP)"),
                         {"id": f"s-{task_id}", "task": task_id})
            conn.execute(text("INSERT INTO triples (sample_id, source, feedback, reward, score, "
                              "created_at) VALUES (:sample, 'sandbox', 'fb', 'good', 1.0, "
                              "CURRENT_TIMESTAMP)"), {"sample": f"s-{task_id}"})


def check_backfill(url: str) -> None:
    """Triples stored before revision 0004 are marked by the rule when it runs (also with more
    trainable tasks than one UPDATE takes); downgrading removes the mark again."""
    store = Store(url)
    try:
        upgrade(store.engine, "0003")
        tasks = [("mbpp/601", "mbpp", "train", "Add."), ("mbpp/511", "mbpp", "validation", "Add."),
                 ("mbpp/11", "mbpp", "test", "Add."),
                 ("humaneval/HumanEval/0", "humaneval", "test", "def f():"),
                 ("builtin/1", "mbpp", "train", "Add."),
                 ("builtin/21", "mbpp", "validation", "Add."), ("user/empty", "user", None, "")]
        users = [(f"user/{i}", "user", None, f"task {i}") for i in range(700)]
        _insert_at_0003(store, tasks + users)
        upgrade(store.engine)
        marks = _marks(store)
        assert {t for t, seen in marks.items() if seen == {True}} == \
            {"mbpp/601", "builtin/1", *(u[0] for u in users)}
        assert {t for t, seen in marks.items() if seen == {False}} == \
            {"mbpp/511", "mbpp/11", "humaneval/HumanEval/0", "builtin/21", "user/empty"}
        with store.engine.connect() as conn:  # no default left: a writer must decide
            with pytest.raises(IntegrityError):
                conn.execute(text("INSERT INTO triples (sample_id, source, feedback, reward, "
                                  "score, created_at) VALUES ('s-mbpp/601', 'sandbox', 'fb', "
                                  "'good', 1.0, CURRENT_TIMESTAMP)"))
        downgrade(store.engine, "0003")
        with store.engine.connect() as conn:
            columns = conn.execute(text("SELECT * FROM triples")).keys()
        assert "trainable" not in columns
    finally:
        store.close()


def test_the_migration_marks_triples_stored_before_it(tmp_path: Path) -> None:
    check_backfill(f"sqlite:///{tmp_path}/old.db")


def test_the_model_has_no_default_for_the_mark() -> None:
    column = TripleRow.__table__.c.trainable
    assert column.default is None and column.server_default is None and not column.nullable
