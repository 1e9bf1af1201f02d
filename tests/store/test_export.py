"""Export: JSON lines the trainer reads, a folder ``datasets`` loads, and `leti triples export`;
and concurrent writers on one SQLite file."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from sandbox.tasks import load_mbpp
from service.store.db import Store
from service.store.export import export_hf, export_jsonl
from service.store.samples import (ExecutionRecord, FeedbackRecord, NewSample, add_execution,
                                   add_feedback, add_samples, sample_history)
from service.store.tasks import ensure_user_task, sync_catalogue
from service.store.triples import CONTRACT_FIELDS, TripleFilter


def _execution(status: str) -> ExecutionRecord:
    good = status == "passed"
    return ExecutionRecord(status=status, feedback="All 3 tests passed." if good else
                           "Test 1 failed: assert f() == 1\nExpected 1, got 2.",
                           reward="good" if good else "bad", score=float(good), tests_passed=0,
                           tests_total=3, duration_ms=1.0, outcome={"status": status},
                           backend="local")


@pytest.fixture
def store(tmp_path: Path, mbpp_path: Path) -> Store:
    """A migrated store with MBPP, two executed samples, external feedback and a user task."""
    store = Store(f"sqlite:///{tmp_path}/leti.db")
    store.migrate()
    tasks = load_mbpp(mbpp_path)
    reference = next(t for t in tasks if t.task_id == "mbpp/601").reference
    with store.write() as session:
        sync_catalogue(session, tasks)
        user = ensure_user_task(session, "Return one.", ["assert f() == 1"])
        good, bad = add_samples(session, [
            NewSample("mbpp/601", reference or "", origin="generated", adapter="policy-v1"),
            NewSample(user.id, "def f(): return 2", origin="submitted")])
        add_execution(session, good.id, _execution("passed"))
        add_execution(session, bad.id, _execution("failed"))
        add_feedback(session, bad.id, FeedbackRecord(raw={"thumb": "down"}, label="bad",
                                                     score=0.0, text="off by one"))
    return store


def test_jsonl_export_is_exactly_the_contract_and_the_trainer_reads_it(
        store: Store, tmp_path: Path) -> None:
    from trainer.data import read_triples

    path = tmp_path / "out" / "triples.jsonl"
    assert export_jsonl(store, path) == 3
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert all(tuple(line) == CONTRACT_FIELDS for line in lines)
    mbpp, user_sandbox, user_external = lines
    assert mbpp["task_id"] == "mbpp/601" and mbpp["kind"] == "mbpp"
    assert mbpp["adapter"] == "policy-v1" and mbpp["reference"] and len(mbpp["tests"]) == 3
    assert (user_sandbox["status"], user_sandbox["reward"], user_sandbox["score"]) == \
        ("failed", "bad", 0.0)
    assert user_external["source"] == "external" and user_external["status"] == "failed"
    assert user_external["feedback"] == "off by one" and user_external["reference"] is None
    triples = read_triples(path)
    assert [t.task_id for t in triples] == [line["task_id"] for line in lines]
    assert triples[0].task.function_name == "max_chain_length"


def test_filters_and_cursor_select_what_is_exported(store: Store, tmp_path: Path) -> None:
    assert export_jsonl(store, tmp_path / "good.jsonl", TripleFilter(reward="good")) == 1
    assert export_jsonl(store, tmp_path / "new.jsonl", TripleFilter(after=2)) == 1
    assert export_jsonl(store, tmp_path / "none.jsonl", TripleFilter(kind="humaneval")) == 0
    assert (tmp_path / "none.jsonl").read_text() == ""


def test_hf_export_loads_with_datasets(store: Store, tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    folder = tmp_path / "hf"
    assert export_hf(store, folder) == 3
    loaded = datasets.load_dataset(str(folder), split="train", cache_dir=str(tmp_path / "cache"))
    assert loaded.num_rows == 3 and tuple(loaded.column_names) == CONTRACT_FIELDS
    assert loaded.features["tests"].feature.dtype == "string"
    assert loaded.features["entry_point"].dtype == "string"  # null in every row, still typed
    assert loaded.features["score"].dtype == "float64"
    rows = [json.loads(line) for line in (folder / "triples.jsonl").read_text().splitlines()]
    assert loaded.to_list() == rows


def test_cli_exports_from_the_configured_store(store: Store, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from service.cli import app

    monkeypatch.setenv("LETI_DATABASE_URL", store.url)
    out = tmp_path / "cli.jsonl"
    result = CliRunner().invoke(app, ["triples", "export", "--out", str(out),
                                      "--source", "sandbox"])
    assert result.exit_code == 0, result.output
    assert [json.loads(x)["source"] for x in out.read_text().splitlines()] == ["sandbox"] * 2
    assert f"wrote 2 triples to {out}" in result.output
    with store.write() as session:  # a held-out task's triple and a cut failure
        held, cut = add_samples(session, [
            NewSample("mbpp/511", "x = 1", origin="submitted"),
            NewSample("mbpp/602", "def f(:", origin="generated", finish_reason="length")])
        add_execution(session, held.id, _execution("passed"))
        add_execution(session, cut.id, _execution("failed"))
    again = CliRunner().invoke(app, ["triples", "export", "--out", str(out)])
    assert again.exit_code == 0, again.output
    assert "wrote 4 triples" in again.output
    assert "not exported (held out from training): 1 mbpp validation split" in again.output
    assert "1 of them are failed programs cut at the token limit" in again.output


def test_concurrent_writers_all_commit(store: Store) -> None:
    """Eight threads writing at once queue on the write lock instead of failing."""
    with store.write() as session:
        sample = add_samples(session, [NewSample("mbpp/602", "x = 1", origin="submitted")])[0]
    errors: list[BaseException] = []

    def write(n: int) -> None:
        try:
            for i in range(25):
                with store.write() as session:
                    add_feedback(session, sample.id, FeedbackRecord(
                        raw={"n": n, "i": i}, label="good", score=1.0, text=f"{n}/{i}"))
        except BaseException as exc:  # noqa: BLE001 - collected and reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with store.read() as session:
        assert len(sample_history(session, sample.id)[1]) == 200


def test_both_formats_carry_each_programs_finish_reason(store: Store, tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    with store.write() as session:
        cut = add_samples(session, [NewSample("mbpp/603", "def f(:\n  f f f", origin="generated",
                                              finish_reason="length")])[0]
        add_execution(session, cut.id, _execution("syntax_error"))
    assert export_jsonl(store, tmp_path / "t.jsonl") == 4
    rows = [json.loads(line) for line in (tmp_path / "t.jsonl").read_text().splitlines()]
    assert [r["finish_reason"] for r in rows] == [None, None, None, "length"]
    assert export_hf(store, tmp_path / "hf") == 4
    loaded = datasets.load_dataset(str(tmp_path / "hf"), split="train",
                                   cache_dir=str(tmp_path / "cache"))
    assert loaded.features["finish_reason"].dtype == "string"
    assert loaded["finish_reason"] == [None, None, None, "length"]
