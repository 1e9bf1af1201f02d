"""Grading and feedback: every status, with the exact feedback text LETI trains on."""

from __future__ import annotations

import asyncio
import json
import os

import pytest

from sandbox import Job, JobError, RunnerPool, Status, render_feedback

ADD_TESTS = ("assert add(1, 2) == 3", "assert add(-1, 1) == 0")


def outcome_of(sandbox: RunnerPool, program: str, tests: tuple[str, ...] = ADD_TESTS, **kw):
    return sandbox.run(Job(program, tests, **kw))


def test_passed(sandbox: RunnerPool) -> None:
    outcome = outcome_of(sandbox, "def add(a, b):\n    return a + b\n")
    assert outcome.status is Status.PASSED
    assert (outcome.tests_passed, outcome.tests_total) == (2, 2)
    assert render_feedback(outcome) == "All 2 tests passed."


def test_wrong_answer_says_expected_and_got(sandbox: RunnerPool) -> None:
    outcome = outcome_of(sandbox, "def add(a, b):\n    return a - b\n")
    assert outcome.status is Status.FAILED
    assert outcome.failed_test == 1 and outcome.tests_passed == 0
    assert render_feedback(outcome) == "Test 1 failed: assert add(1, 2) == 3\nExpected 3, got -1."


def test_second_test_failing_is_named(sandbox: RunnerPool) -> None:
    outcome = outcome_of(sandbox, "def add(a, b):\n    return 3\n")
    assert outcome.failed_test == 2 and outcome.tests_passed == 1
    assert render_feedback(outcome).startswith("Test 2 failed: assert add(-1, 1) == 0\nExpected 0, got 3.")


def test_expected_on_the_left_is_recognised(sandbox: RunnerPool) -> None:
    outcome = outcome_of(sandbox, "def add(a, b):\n    return 0\n", ("assert 3 == add(1, 2)",))
    assert (outcome.expected, outcome.actual) == ("3", "0")


def test_long_values_are_truncated(sandbox: RunnerPool) -> None:
    outcome = outcome_of(sandbox, "def f():\n    return 'x' * 100000\n", ("assert f() == 'y'",))
    assert len(outcome.actual) <= 200
    assert len(render_feedback(outcome)) < 400


def test_plain_assert_failure(sandbox: RunnerPool) -> None:
    outcome = outcome_of(sandbox, "def ok(x):\n    return False\n", ("assert ok(1)",))
    assert outcome.status is Status.FAILED
    assert outcome.expected is None
    assert render_feedback(outcome) == "Test 1 failed: assert ok(1)"


def test_exception_traceback_uses_program_line_numbers(sandbox: RunnerPool) -> None:
    program = "import math\n\n\ndef add(a, b):\n    total = a + b\n    return total + missing\n"
    outcome = outcome_of(sandbox, program)
    assert outcome.status is Status.ERROR and outcome.error_type == "NameError"
    feedback = render_feedback(outcome)
    assert 'File "<program>", line 6, in add' in feedback
    assert "return total + missing" in feedback
    assert feedback.endswith("NameError: name 'missing' is not defined")
    assert "runner" not in feedback  # the harness's own frames are trimmed away


def test_library_frames_are_trimmed(sandbox: RunnerPool) -> None:
    program = "import json\ndef add(a, b):\n    return json.loads('{')\n"
    outcome = outcome_of(sandbox, program)
    assert outcome.error_type == "JSONDecodeError"
    assert "json/decoder.py" not in outcome.traceback
    assert 'File "<program>", line 3, in add' in outcome.traceback


def test_assertion_inside_the_program_is_an_error_not_a_failed_test(sandbox: RunnerPool) -> None:
    outcome = outcome_of(sandbox, "def add(a, b):\n    assert a > 5, 'too small'\n    return a + b\n")
    assert outcome.status is Status.ERROR
    assert outcome.error_type == "AssertionError"


def test_syntax_error_points_at_the_line(sandbox: RunnerPool) -> None:
    outcome = outcome_of(sandbox, "def add(a, b):\n    return (a + b\n")
    assert outcome.status is Status.SYNTAX_ERROR
    assert outcome.message.startswith("SyntaxError:") and "(line 2)" in outcome.message
    assert 'File "<program>", line 2' in render_feedback(outcome)


def test_error_in_setup_and_program_phases(sandbox: RunnerPool) -> None:
    at_import = outcome_of(sandbox, "raise ValueError('boom')\n")
    assert (at_import.status, at_import.phase, at_import.error_type) == (Status.ERROR, "program", "ValueError")
    in_setup = sandbox.run(Job("def add(a, b):\n    return a + b\n", ADD_TESTS, setup="1 / 0"))
    assert (in_setup.status, in_setup.phase) == (Status.ERROR, "setup")


def test_setup_code_runs_before_the_tests(sandbox: RunnerPool) -> None:
    job = Job("def add(a, b):\n    return a + b + OFFSET\n", ("assert add(1, 2) == 13",), setup="OFFSET = 10")
    assert sandbox.run(job).status is Status.PASSED


def test_humaneval_style_check_reports_the_failing_assertion(sandbox: RunnerPool) -> None:
    check = "def check(candidate):\n    assert candidate(2) == 4\n    assert candidate(3) == 9\n"
    outcome = outcome_of(sandbox, "def sq(x):\n    return x * 2\n", (check, "check(sq)"))
    assert outcome.status is Status.FAILED
    assert outcome.failed_test == 2
    assert outcome.failed_assertion == "assert candidate(3) == 9"
    assert (outcome.expected, outcome.actual) == ("9", "6")


def test_output_tails_are_kept(sandbox: RunnerPool) -> None:
    program = "import sys\nprint('hello')\nprint('oops', file=sys.stderr)\ndef add(a, b):\n    return a + b\n"
    outcome = outcome_of(sandbox, program)
    assert outcome.stdout == "hello\n" and outcome.stderr == "oops\n"
    assert outcome.duration_ms > 0


def test_jobs_are_isolated_from_each_other(sandbox: RunnerPool) -> None:
    write = "open('/tmp/leftover', 'w').write('x')\nopen('here', 'w').write('x')\ndef add(a, b):\n    return a + b\n"
    read = ("import os\ndef add(a, b):\n    return a + b\n"
            "assert not os.path.exists('/tmp/leftover') and not os.listdir('.')\n")
    assert outcome_of(sandbox, write).passed
    assert outcome_of(sandbox, read).passed


def test_run_many_keeps_order(sandbox: RunnerPool) -> None:
    jobs = [Job(f"def add(a, b):\n    return a + b + {i % 2}\n", ADD_TESTS, id=str(i)) for i in range(20)]
    outcomes = asyncio.run(sandbox.run_many(jobs, concurrency=4))
    assert [o.id for o in outcomes] == [str(i) for i in range(20)]
    assert [o.passed for o in outcomes] == [i % 2 == 0 for i in range(20)]


def test_run_many_reports_each_outcome_once_and_accepts_no_jobs(sandbox: RunnerPool) -> None:
    jobs = [Job(f"def add(a, b):\n    return a + b + {i % 3}\n", ADD_TESTS, id=str(i))
            for i in range(9)]
    seen: list[str | None] = []
    outcomes = asyncio.run(sandbox.run_many(jobs, on_done=lambda o: seen.append(o.id)))
    assert sorted(seen, key=lambda i: int(i or 0)) == [o.id for o in outcomes]
    assert asyncio.run(sandbox.run_many([])) == []


@pytest.mark.parametrize("kwargs, message", [
    ({"program": 3, "tests": []}, "'program' must be a string"),
    ({"program": "x", "tests": "assert 1"}, "'tests' must be a list"),
    ({"program": "x" * 300_000, "tests": []}, "larger than"),
    ({"program": "x", "tests": [], "timeout": 0}, "'timeout'"),
    ({"program": "x", "tests": [], "memory_mb": 1}, "'memory_mb'"),
])
def test_bad_jobs_are_refused_with_a_reason(kwargs: dict, message: str) -> None:
    with pytest.raises(JobError, match=message):
        Job(**kwargs)


def test_tests_that_do_not_compile_are_a_job_error(local_sandbox: RunnerPool) -> None:
    with pytest.raises(JobError, match="test 1 is not valid Python"):
        local_sandbox.run(Job("def f(): pass", ("assert f( ==",)))
    assert local_sandbox.run(Job("def f():\n    return 1\n", ("assert f() == 1",))).passed


def test_runners_are_pinned_one_per_cpu(sandbox: RunnerPool) -> None:
    """Each of the pool's runners (and every job it forks) stays on one CPU of its own."""
    sandbox.warm_up()
    program = "import os\nprint(sorted(os.sched_getaffinity(0)))\n"
    jobs = [Job(program, (), id=str(i)) for i in range(8)]
    seen = {o.stdout.strip() for o in asyncio.run(sandbox.run_many(jobs))}
    assert all(len(json.loads(cpus)) == 1 for cpus in seen), seen
    if len(os.sched_getaffinity(0)) >= 2:
        assert len(seen) == 2, seen  # two runners (workers=2), two CPUs
