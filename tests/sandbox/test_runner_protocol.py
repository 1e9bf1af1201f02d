"""The runner spoken to directly over its JSON-lines protocol (no pool, no namespaces): every line
gets exactly one answer, in order, and a bad line never stops the ones after it."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from sandbox.channel import RUNNER_PACKAGE
from sandbox.local import interpreter


def runner(*options: str) -> list[str]:
    """The runner's command as the backends give it, without their namespace (no --sweep)."""
    return [str(interpreter()), "-I", "-S", "-B", str(RUNNER_PACKAGE / "__main__.py"), *options]


def answers(lines: list[str], tmp_path: Path, *options: str) -> list[dict]:
    proc = subprocess.run(
        runner(*options),
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


def test_a_cpu_slot_pins_the_runner_and_every_job_to_one_cpu(tmp_path: Path) -> None:
    cpus = sorted(os.sched_getaffinity(0))
    program = "import os\nprint(sorted(os.sched_getaffinity(0)))\n"
    replies = answers([job("pinned", program, [])], tmp_path, "--cpu-slot", "1")
    assert replies[0]["stdout"].strip() == str([cpus[1 % len(cpus)]])
    (unpinned,) = answers([job("free", program, [])], tmp_path)
    assert unpinned["stdout"].strip() == str(cpus)


def test_a_job_larger_than_the_childs_read_buffer_arrives_whole(tmp_path: Path) -> None:
    filler = "# " + "x" * 98 + "\n"
    program = filler * 3000 + "def f():\n    return 7\n"  # ~300 KB, past the 64 KiB buffer
    (reply,) = answers([job("large", program, ["assert f() == 7"])], tmp_path)
    assert reply["status"] == "passed", reply


def test_a_bad_cpu_slot_is_refused(tmp_path: Path) -> None:
    proc = subprocess.run(runner("--cpu-slot", "x"),
                          input="", capture_output=True, text=True, env={"TMPDIR": str(tmp_path)},
                          timeout=60, check=False)
    assert proc.returncode == 2 and "--cpu-slot needs a whole number" in proc.stderr
