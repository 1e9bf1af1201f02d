"""The runner spoken to directly over its JSON-lines protocol (no pool, no namespaces): every line
gets exactly one answer, in order, and a bad line never stops the ones after it."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from sandbox.local import RUNNER_PATH, interpreter


def answers(lines: list[str], tmp_path: Path) -> list[dict]:
    proc = subprocess.run(
        [str(interpreter()), "-I", "-S", "-B", str(RUNNER_PATH)],
        input="".join(line + "\n" for line in lines), capture_output=True, text=True,
        env={"TMPDIR": str(tmp_path)}, timeout=60, check=True,
    )
    return [json.loads(line) for line in proc.stdout.splitlines()]


def job(job_id: str, program: str, tests: list[str]) -> str:
    return json.dumps({"id": job_id, "program": program, "tests": tests, "timeout": 5})


def test_every_line_gets_its_answer_in_order(tmp_path: Path) -> None:
    honest = "def f(x):\n    return x + 1\n"
    replies = answers([
        job("syntax", "def f(:\n", ["assert f(1) == 2"]),
        "{not json",
        "[" * 100_000 + "]" * 100_000,  # nested past the JSON decoder's recursion limit
        job("passes", honest, ["assert f(1) == 2", "assert f(2) == 3"]),
        json.dumps({"id": "typed", "program": 3, "tests": []}),
        job("fails", honest, ["assert f(1) == 5"]),
        job("again", honest, ["assert f(1) == 2"]),
    ], tmp_path)
    assert [r.get("status") or r.get("invalid_job", "")[:12] for r in replies] == [
        "syntax_error", "invalid JSON", "invalid JSON", "passed", "'program' mu", "failed", "passed"]
    assert [r["id"] for r in replies] == ["syntax", None, None, "passes", "typed", "fails", "again"]
    assert "(line 1)" in replies[0]["message"] and replies[0]["tests_passed"] == 0
    assert replies[3]["tests_passed"] == replies[3]["tests_total"] == 2
    assert replies[5]["expected"] == "5" and replies[5]["actual"] == "2"


def test_each_job_finds_an_empty_scratch_directory_and_none_is_left(tmp_path: Path) -> None:
    program = ("import os\nassert os.listdir('.') == [], os.listdir('.')\n"
               "open('left-behind.txt', 'w').write('x')\ndef f(x):\n    return x + 1\n")
    replies = answers([job("writes", program, ["assert f(1) == 2"])] * 3, tmp_path)
    assert [r["status"] for r in replies] == ["passed"] * 3
    assert list(tmp_path.iterdir()) == []
