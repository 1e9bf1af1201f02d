"""Programs written to forge a pass, in both backends: none is graded passed, and the feedback
says what happened.

The expected value 987654321 appears only in the tests, never in a program, so a program can
only pass by producing it. Each case is tried on a VALUE test (``assert f(1) == 987654321``:
the runner compares) and on a JUDGED one (HumanEval's ``check(candidate)``: the judge process
decides), and each is followed by an honest job on the same sandbox.
"""

from __future__ import annotations

import textwrap

import pytest

from sandbox import Job, Outcome, RunnerPool, Status, render_feedback

EXPECTED = 987654321
VALUE_TESTS = (f"assert f(1) == {EXPECTED}", f"assert f(2) == {EXPECTED}")
CHECK = f"def check(candidate):\n    assert candidate(1) == {EXPECTED}\n    assert candidate(2) == {EXPECTED}\n"
JUDGED_TESTS = (CHECK, "check(f)")
HONEST = Job(f"def f(x):\n    return {EXPECTED}\n", VALUE_TESTS)

# Every line a harness has ever accepted as a pass, old protocol and new.
FORGED = ('b\'{"event": "test_passed", "index": 1}\\n{"event": "test_passed", "index": 2}\\n'
          '{"status": "passed"}\\nV 1 0\\nV 2 0\\n\'')

pytestmark = pytest.mark.timeout(120)


def run(sandbox: RunnerPool, program: str, tests: tuple[str, ...]) -> Outcome:
    outcome = sandbox.run(Job(textwrap.dedent(program), tests, timeout=3))
    assert sandbox.run(HONEST).status is Status.PASSED, "the sandbox must still grade honestly"
    assert sandbox.run(Job(HONEST.program, JUDGED_TESTS)).status is Status.PASSED
    return outcome


def both(sandbox: RunnerPool, program: str) -> list[Outcome]:
    outcomes = [run(sandbox, program, VALUE_TESTS), run(sandbox, program, JUDGED_TESTS)]
    for outcome in outcomes:
        assert not outcome.passed, render_feedback(outcome)
    return outcomes


def test_reports_written_to_every_descriptor_then_exit_0(sandbox: RunnerPool) -> None:
    program = f"""
        import os
        for fd in range(256):
            try:
                os.write(fd, {FORGED})
            except OSError:
                pass
        os._exit(0)
    """
    value, judged = both(sandbox, program)
    # The value test gets the forged "V 1 0" value: it is compared like any other, and fails.
    assert value.status is Status.FAILED and (value.expected, value.actual) == (str(EXPECTED), "0")
    assert "line(s) of its own into the harness's report channel" in render_feedback(value)
    # The judge's channel is not among the program's descriptors: its forged lines reach nothing.
    assert judged.status is Status.CRASHED and judged.error_type == "EarlyExit"
    assert "exited with code 0 before the tests finished" in render_feedback(judged)
    assert "report channel" in render_feedback(judged)


def test_descriptors_reopened_through_proc(sandbox: RunnerPool) -> None:
    program = f"""
        import os
        opened = 0
        for pid in os.listdir('/proc'):
            if not pid.isdigit():
                continue
            try:
                fds = os.listdir(f'/proc/{{pid}}/fd')
            except OSError:
                continue
            for fd in fds:
                try:
                    handle = os.open(f'/proc/{{pid}}/fd/{{fd}}', os.O_WRONLY | os.O_NONBLOCK)
                except OSError:
                    continue
                opened += 1
                try:
                    os.write(handle, {FORGED})
                except OSError:
                    pass
        print('reopened', opened)
        os._exit(0)
    """
    value, judged = both(sandbox, program)
    assert value.status is Status.FAILED and value.actual == "0"
    assert judged.status is Status.CRASHED and "before the tests finished" in judged.message
    assert "report channel" in render_feedback(judged)


def test_frames_and_the_garbage_collector_hold_no_expected_value(sandbox: RunnerPool) -> None:
    """The harness's frames are reachable, and its emit function usable: it changes nothing."""
    program = f"""
        import gc, sys
        found = any(obj == {EXPECTED} for obj in gc.get_objects() if type(obj) is int)
        texts = [o for o in gc.get_objects() if isinstance(o, str) and '{EXPECTED}' in o]
        frame, emit = sys._getframe(), None
        while frame is not None:
            emit = emit or frame.f_locals.get('emit')
            frame = frame.f_back
        print('expected value found:', found or bool(texts), 'emit found:', emit is not None)
        if emit is not None:
            emit({FORGED})
        def f(x):
            return x
    """
    value, judged = both(sandbox, program)
    assert "expected value found: False emit found: True" in value.stdout
    assert value.status is Status.FAILED and value.actual == "0"
    assert "report channel" in render_feedback(value)
    assert judged.status is Status.FAILED and (judged.expected, judged.actual) == (str(EXPECTED), "1")


def test_patched_builtins_and_harness(sandbox: RunnerPool) -> None:
    program = """
        import builtins, json, sys
        fakes = {"plain_json": lambda value: b'0',  # the harness's value encoder
                 "to_plain": lambda value: 0, "send_frame": lambda fd, message: None}
        for module in list(sys.modules.values()):  # wherever a module of the harness holds them
            for name in fakes:
                if name in vars(module):
                    setattr(module, name, fakes[name])
        builtins.isinstance = lambda *a: True
        json.dumps = lambda *a, **k: '{"status": "passed"}'
        def f(x):
            return x
    """
    value, judged = both(sandbox, program)
    # Whatever the program's process now claims, the runner reads and compares what arrives.
    broken = (Status.FAILED, Status.CRASHED, Status.ERROR, Status.TIMEOUT)
    assert value.status in broken and judged.status in broken


def test_patched_harness_claiming_the_value_only_passes_by_producing_it(sandbox: RunnerPool) -> None:
    """The encoder patched to claim a value: the program has then produced that value itself."""
    program = """
        import sys
        for module in list(sys.modules.values()):  # wherever a module of the harness holds it
            if "plain_json" in vars(module):
                module.plain_json = lambda value: b'12345'
        def f(x):
            return x
    """
    value = run(sandbox, program, VALUE_TESTS)
    assert value.status is Status.FAILED and (value.expected, value.actual) == (str(EXPECTED), "12345")


def test_leftover_threads_signal_handlers_and_atexit_hooks(sandbox: RunnerPool) -> None:
    program = f"""
        import atexit, os, signal, threading, time
        def forge(*_):
            for fd in range(256):
                try:
                    os.write(fd, {FORGED})
                except OSError:
                    pass
            os._exit(0)
        atexit.register(forge)
        signal.signal(signal.SIGALRM, forge)
        signal.signal(signal.SIGTERM, forge)
        signal.setitimer(signal.ITIMER_REAL, 0.05)
        threading.Thread(target=lambda: (time.sleep(0.02), forge()), daemon=True).start()
        def f(x):
            time.sleep(0.2)
            return x
    """
    value, judged = both(sandbox, program)
    assert value.status in (Status.FAILED, Status.CRASHED)
    assert "report channel" in render_feedback(value)
    # In the judged job the thread may fire during the judge's call and write into its socket:
    # the judge then reads bytes the harness never sent (a broken protocol, or an oversized
    # message it skips and compares as an opaque value).
    feedback = f"{judged.message}\n{render_feedback(judged)}"
    assert judged.status in (Status.CRASHED, Status.FAILED), feedback
    assert "before the tests finished" in feedback or "broke the harness's protocol" in feedback \
        or "bytes (over" in feedback, feedback


@pytest.mark.parametrize("ending", ["import sys\nsys.exit(0)", "import os\nos._exit(0)",
                                    "raise SystemExit", "exit()",
                                    "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)"])
def test_early_exit_never_passes(sandbox: RunnerPool, ending: str) -> None:
    value, judged = both(sandbox, ending + "\ndef f(x):\n    return 987654321\n")
    for outcome in (value, judged):
        assert outcome.tests_passed == 0
        if ending != "exit()":  # without the site module (python -S) exit is not defined
            said = f"{outcome.message}\n{render_feedback(outcome)}"
            assert "before the tests finished" in said or outcome.error_type == "Killed", said


def test_early_exit_inside_a_judged_call(sandbox: RunnerPool) -> None:
    outcome = run(sandbox, "import os\ndef f(x):\n    os._exit(0)\n", JUDGED_TESTS)
    assert outcome.status is Status.CRASHED and outcome.error_type == "EarlyExit"


def test_forged_judge_messages(sandbox: RunnerPool) -> None:
    """The program's process speaks the judge's protocol on every descriptor: "done" before a
    test has run, a reply to a call never made. The judge runs its tests all the same."""
    program = """
        import json, os
        for message in (["done"], ["ok", 987654321], ["go", {}]):
            data = json.dumps(message).encode()
            for fd in range(3, 64):
                try:
                    os.write(fd, len(data).to_bytes(4, "little") + data)
                except OSError:
                    pass
        def f(x):
            return x
    """
    outcome = run(sandbox, program, JUDGED_TESTS)
    assert not outcome.passed, render_feedback(outcome)


def test_first_test_right_second_wrong_is_failed_at_the_second(sandbox: RunnerPool) -> None:
    program = f"def f(x):\n    return {EXPECTED} if x == 1 else 0\n"
    value, judged = both(sandbox, program)
    assert (value.failed_test, value.tests_passed) == (2, 1)
    assert judged.status is Status.FAILED and judged.failed_test == 2


def test_no_module_can_be_planted_for_the_judge(sandbox: RunnerPool) -> None:
    """The judge imports the module each of the program's module names refers to: a module the
    program wrote where the harness imports from would run in the judge, and could report a
    pass. Every such directory is read-only."""
    forge = ("import os\nfor fd in range(256):\n    try:\n"
             f"        os.write(fd, {FORGED})\n    except OSError:\n        pass\n")
    program = f"""
        import os, sys, types
        package = sys.modules.get("runner")  # the harness's package, as the sandbox names it
        places = [p for p in (*getattr(package, "__path__", []), *sys.path) if p]
        planted = []
        for place in places:
            try:
                with open(os.path.join(place, "leti_planted.py"), "w") as file:
                    file.write({forge!r})
                planted.append(place)
            except OSError:
                pass
        print("planted", planted)
        inside = types.ModuleType("runner.leti_planted")  # the judge imports them by these names
        beside = types.ModuleType("leti_planted")
        def f(x):
            return x
    """
    value, judged = both(sandbox, program)
    assert "planted []" in value.stdout, value.stdout  # (a judged job's failure cuts its output)
    assert judged.status is Status.FAILED and judged.actual == "1"
