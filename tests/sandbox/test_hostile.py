"""Hostile programs, in both backends: every case is contained and the service side is unharmed.

Each test runs the hostile program, checks its outcome and what it could (not) do, then checks that
the same sandbox still grades an honest program correctly.
"""

from __future__ import annotations

import os
import socket
import subprocess
import textwrap
import threading
import uuid
from pathlib import Path

import pytest

from sandbox import Job, RunnerPool, Status, make_sandbox, render_feedback

HONEST = Job("def f(x):\n    return x + 1\n", ("assert f(1) == 2",), timeout=5)


def run(sandbox: RunnerPool, program: str, tests: tuple[str, ...] = ("assert f(1) == 2",),
        timeout: float = 2.0, memory_mb: int = 256):
    outcome = sandbox.run(Job(textwrap.dedent(program), tests, timeout=timeout, memory_mb=memory_mb))
    assert sandbox.run(HONEST).status is Status.PASSED, "the sandbox must survive the hostile job"
    return outcome


def host_processes_matching(marker: str) -> list[str]:
    out = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True, check=True).stdout
    return [line for line in out.splitlines() if marker in line and "ps -eo" not in line]


pytestmark = pytest.mark.timeout(120)


def test_infinite_loop_times_out(sandbox: RunnerPool) -> None:
    outcome = run(sandbox, "def f(x):\n    while True:\n        pass\n", timeout=1)
    assert outcome.status is Status.TIMEOUT
    assert outcome.duration_ms < 4000
    assert "did not finish within 1 s" in render_feedback(outcome)


def test_cpu_burn_in_threads_times_out(sandbox: RunnerPool) -> None:
    program = """
        import threading
        def burn():
            while True:
                sum(i * i for i in range(1000))
        for _ in range(4):
            threading.Thread(target=burn, daemon=True).start()
        burn()
    """
    assert run(sandbox, program, timeout=1).status is Status.TIMEOUT


def test_fork_bomb_is_contained(sandbox: RunnerPool) -> None:
    program = """
        import os
        while True:
            try:
                os.fork()
            except OSError:
                pass
    """
    outcome = run(sandbox, program, timeout=2)
    assert outcome.status in (Status.TIMEOUT, Status.ERROR, Status.CRASHED)
    assert not outcome.passed


def test_memory_bomb_is_stopped(sandbox: RunnerPool) -> None:
    program = """
        chunks = []
        while True:
            chunks.append(bytearray(50 * 2**20))
    """
    outcome = run(sandbox, program, timeout=5, memory_mb=256)
    assert outcome.status is Status.MEMORY
    assert "MemoryError" in render_feedback(outcome) or "memory" in render_feedback(outcome)


def test_stdout_flood_is_capped(sandbox: RunnerPool) -> None:
    program = """
        import sys
        block = "x" * 2**20
        for _ in range(100):
            sys.stdout.write(block)
        def f(x):
            return x + 1
    """
    outcome = run(sandbox, program, timeout=10)
    assert outcome.status is Status.PASSED  # printing a lot is not wrong, only bounded
    assert len(outcome.stdout) < 8192
    assert "earlier bytes dropped" in outcome.stdout


def test_deep_recursion_is_an_error(sandbox: RunnerPool) -> None:
    outcome = run(sandbox, "def f(x):\n    return f(x + 1)\n")
    assert outcome.status is Status.ERROR
    assert outcome.error_type == "RecursionError"
    assert 'File "<program>", line 2, in f' in outcome.traceback
    assert len(render_feedback(outcome)) <= 2000


def test_recursion_past_the_c_stack_crashes_contained(sandbox: RunnerPool) -> None:
    program = """
        import sys
        sys.setrecursionlimit(10**8)
        def f(x):
            return f(x + 1) + 1
    """
    # Filling 256 MB with frames takes ~4 s of CPU on the project's VM: time enough under load.
    outcome = run(sandbox, program, timeout=20)
    assert outcome.status in (Status.CRASHED, Status.ERROR, Status.MEMORY)
    assert not outcome.passed


def test_segfault_through_ctypes(sandbox: RunnerPool) -> None:
    outcome = run(sandbox, "import ctypes\nctypes.string_at(0)\n")
    assert outcome.status is Status.CRASHED
    assert outcome.error_type == "SIGSEGV"


@pytest.mark.parametrize("exit_call", ["import sys\nsys.exit(0)", "import os\nos._exit(0)",
                                        "raise SystemExit(0)", "exit()"])
def test_exiting_before_the_tests_never_passes(sandbox: RunnerPool, exit_call: str) -> None:
    outcome = run(sandbox, f"def f(x):\n    return x + 1\n{exit_call}\n")
    assert not outcome.passed
    assert outcome.status in (Status.ERROR, Status.CRASHED)


def test_exiting_inside_a_test_never_passes(sandbox: RunnerPool) -> None:
    outcome = run(sandbox, "import os\ndef f(x):\n    os._exit(0)\n")
    assert outcome.status is Status.CRASHED
    assert "before the tests finished" in outcome.message


def test_always_equal_object_fails(sandbox: RunnerPool) -> None:
    program = """
        class Anything:
            def __eq__(self, other):
                return True
            __hash__ = object.__hash__
        def f(x):
            return Anything()
    """
    outcome = run(sandbox, program)
    assert outcome.status is Status.FAILED
    assert "returned an object of type Anything, and only plain data" in render_feedback(outcome)
    check = "def check(candidate):\n    assert candidate(1) == 2\n"  # decided in the judge
    judged = run(sandbox, program, (check, "check(f)"))
    assert judged.status is Status.FAILED and judged.actual.startswith("<__program__.Anything")


def test_daemonised_grandchild_does_not_outlive_the_job(sandbox: RunnerPool) -> None:
    marker = str(700000 + uuid.uuid4().int % 99999)
    program = f"""
        import os
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                os.execv("/bin/sleep", ["sleep", "{marker}"])
            os._exit(0)
        def f(x):
            return x + 1
    """
    outcome = run(sandbox, program)
    assert outcome.status is Status.PASSED
    assert host_processes_matching(f"sleep {marker}") == []


def test_killing_the_parent_is_contained(sandbox: RunnerPool) -> None:
    outcome = run(sandbox, "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\n")
    assert not outcome.passed
    assert outcome.status is Status.CRASHED


def test_signalling_every_process_is_contained(sandbox: RunnerPool) -> None:
    # kill(-1) reaches every process the program may signal but the namespace's init, the runner
    outcome = run(sandbox, "import os, signal\nos.kill(-1, signal.SIGKILL)\ndef f(x):\n    return x + 1\n")
    assert outcome.status is Status.CRASHED and outcome.error_type == "RunnerKilled"


def test_cannot_forge_an_outcome_through_the_runners_streams(sandbox: RunnerPool) -> None:
    """The runner's stdout is where outcomes go: a program that could open it (through
    /proc/<pid>/fd of any process of the sandbox) could answer "passed" for itself."""
    forged = '{"id": "forged", "status": "passed", "tests_total": 1, "tests_passed": 1}'
    program = f"""
        import os
        opened = []
        for pid in os.listdir("/proc"):
            if pid.isdigit() and int(pid) != os.getpid():
                for fd in ("0", "1", "2"):
                    try:
                        with open(f"/proc/{{pid}}/fd/{{fd}}", "w") as stream:
                            stream.write({forged!r} + "\\n")
                        opened.append((pid, fd))
                    except OSError:
                        pass
        def f(x):
            return x + 1
        assert not opened, opened
    """
    outcome = run(sandbox, program)
    assert outcome.status is Status.PASSED, render_feedback(outcome)  # it could open nothing
    assert outcome.id != "forged"


def test_cannot_write_outside_the_temp_dir(sandbox: RunnerPool, tmp_path: Path) -> None:
    targets = [tmp_path / "escaped.txt", Path.cwd() / f"escaped-{uuid.uuid4().hex}.txt",
               Path("/etc/leti-escaped.txt"), Path("/usr/leti-escaped.txt")]
    program = "written = []\n"
    for target in targets:
        program += (f"try:\n    open({str(target)!r}, 'w').write('pwned')\n    written.append(1)\n"
                    f"except OSError:\n    pass\n")
    program += "def f(x):\n    return x + 1\nassert not written, written\n"
    outcome = run(sandbox, program)
    assert outcome.status is Status.PASSED, render_feedback(outcome)
    assert not any(target.exists() for target in targets)


def test_cannot_read_a_host_file_holding_a_secret(sandbox: RunnerPool, tmp_path: Path) -> None:
    secret = f"secret-{uuid.uuid4().hex}"
    paths = [tmp_path / "secret.txt", Path.cwd() / ".leti-test-secret"]
    for path in paths:
        path.write_text(secret)
    try:
        program = "found = []\n"
        for path in paths:
            program += f"try:\n    found.append(open({str(path)!r}).read())\nexcept OSError:\n    pass\n"
        program += "print(found)\ndef f(x):\n    return x + 1\n"
        outcome = run(sandbox, program)
    finally:
        paths[1].unlink()
    assert outcome.status is Status.PASSED
    assert secret not in outcome.stdout and outcome.stdout.strip() == "[]"


@pytest.mark.parametrize("backend", ["local", pytest.param("docker", marks=pytest.mark.docker)])
def test_cannot_read_secrets_from_the_environment(monkeypatch: pytest.MonkeyPatch,
                                                  backend: str) -> None:
    secret = f"key-{uuid.uuid4().hex}"
    monkeypatch.setenv("LETI_API_KEY", secret)  # set before the runners start
    program = """
        import os, glob
        seen = [str(os.environ)]
        for path in glob.glob("/proc/*/environ"):
            try:
                seen.append(open(path, "rb").read().decode(errors="replace"))
            except OSError:
                pass
        print("\\n".join(seen))
        def f(x):
            return x + 1
    """
    with make_sandbox(backend, workers=1) as fresh:  # type: ignore[call-overload]
        outcome = run(fresh, program)
    assert outcome.status is Status.PASSED
    assert secret not in outcome.stdout
    assert "LETI_API_KEY" not in outcome.stdout


def test_cannot_reach_a_listener_on_loopback(sandbox: RunnerPool) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.settimeout(3)
    port = listener.getsockname()[1]
    accepted: list[object] = []

    def accept() -> None:
        try:
            accepted.append(listener.accept())
        except OSError:
            pass

    thread = threading.Thread(target=accept)
    thread.start()
    program = f"""
        import socket
        try:
            socket.create_connection(("127.0.0.1", {port}), timeout=1).sendall(b"hi")
            print("connected")
        except OSError as exc:
            print("refused", type(exc).__name__)
        def f(x):
            return x + 1
    """
    outcome = run(sandbox, program)
    thread.join()
    listener.close()
    assert accepted == []
    assert "refused" in outcome.stdout and "connected" not in outcome.stdout


def test_cannot_see_host_processes(sandbox: RunnerPool) -> None:
    program = """
        import os
        pids = [p for p in os.listdir("/proc") if p.isdigit()]
        print(len(pids))
        def f(x):
            return x + 1
    """
    outcome = run(sandbox, program)
    assert outcome.status is Status.PASSED
    assert int(outcome.stdout.strip()) < 10  # only the sandbox's own few processes
    assert os.getpid() > 10  # (we, on the host, see many more)
