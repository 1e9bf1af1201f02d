"""The references ceiling's data: each task's reference run through the real sandbox, only the
passing ones written, in the contract format the trainer reads (and nothing stored)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from sandbox import make_sandbox
from service.core.evaluation import SandboxExecutor
from service.experiment.references import reference_data, reference_program
from service.store.db import Store
from service.store.models import TaskRow
from service.store.tasks import add_tasks
from service.store.triples import CONTRACT_FIELDS, last_id
from trainer.data import read_triples


def _task(id: str, reference: str) -> TaskRow:
    return TaskRow(id=id, kind="mbpp", instruction="Write a function to add two numbers.",
                   tests=["assert add(1, 2) == 3", "assert add(0, 0) == 0"], setup="",
                   entry_point=None, reference=reference, split="train")


def test_reference_program_has_unix_line_endings() -> None:
    task = _task("mbpp/900", "def add(a, b): \r\n\treturn a + b")
    assert reference_program(task) == "def add(a, b): \n\treturn a + b"


def test_only_passing_references_are_written_and_nothing_is_stored(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'leti.db'}")
    store.migrate()
    with store.write() as session:
        add_tasks(session, [_task("mbpp/901", "def add(a, b):\r\n    return a + b"),
                            _task("mbpp/902", "def add(a, b):\n    return a - b"),
                            _task("mbpp/903", "")])  # no reference: not asked for
    executor = SandboxExecutor(make_sandbox("local", workers=2), "local")
    try:
        made = asyncio.run(reference_data(store, executor, ["mbpp/901", "mbpp/902", "mbpp/903"],
                                          tmp_path / "refs.jsonl", timeout=5.0,
                                          memory_mb=512))
    finally:
        executor.close()

    assert (made.problems, made.kept) == (3, 1)
    assert made.failed == {"mbpp/902": "failed"}
    records = [json.loads(line) for line in (tmp_path / "refs.jsonl").read_text().splitlines()]
    assert [tuple(r) for r in records] == [CONTRACT_FIELDS]
    (record,) = records
    assert record["task_id"] == "mbpp/901" and record["program"] == "def add(a, b):\n    return a + b"
    assert (record["status"], record["reward"], record["score"]) == ("passed", "good", 1.0)
    assert record["feedback"]  # the sandbox's own words for a pass
    assert [t.program for t in read_triples(tmp_path / "refs.jsonl")] == [record["program"]]
    with store.read() as session:  # the ceiling's data never becomes a triple
        assert last_id(session) == 0
