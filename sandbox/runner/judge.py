"""The judge: runs a job's JUDGED tests in a process of its own, which the program never runs in.

Each of the program's names is a stand-in here (``_Remote``) that calls into the program's
process; a test passes when its code ran to the end in this process, and only this process
reports it, on a pipe the program's process never holds.
"""

from __future__ import annotations

import builtins
import json
import linecache
import os
import sys
from collections.abc import Callable
from typing import Any

from .isolation import read_job, set_limits
from .names import PROGRAM_FILE, SETUP_FILE, test_file
from .plain import Opaque, TooLarge, from_plain, short_repr, to_plain
from .plans import EQ_HELPER
from .reports import REPORT_CAP, TEST_PASSED, error_report
from .wire import recv_frame, send_frame


def start_judge(job_r: int, rep_w: int, answers: int, requests: int) -> None:
    """In the judge: read the JUDGED tests, isolate this process, run them. Never returns."""
    os.setsid()
    job = read_job(job_r)
    if job is not None:
        os.chdir(job["workdir"])
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        os.close(devnull)
        set_limits(job["timeout"], job["memory_mb"])
        try:
            unsafe_judge(job, (answers, requests), rep_w)
        except BaseException:  # noqa: BLE001 - the program's process went away mid-message
            pass
    os._exit(0)


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
    assert_eq = _equality_helper(helper_state)
    namespace: dict = {"__name__": "__tests__", "__builtins__": builtins}
    installed: dict = {}  # names of the program's that this judge holds stand-ins for
    for index, code, _ in job["judged"]:
        message = recv_frame(program[0])
        if message is None or message[0] != "go":
            return  # the program's process ended before this test's turn
        _install(message[1], namespace, installed, program)
        helper_state.clear()
        namespace[EQ_HELPER] = assert_eq
        try:
            exec(code, namespace)
        except BaseException as exc:  # noqa: BLE001
            report = _failure_report(exc, index, keep, tuple(files.values()), helper_state)
            os.write(report_fd, (json.dumps(report) + "\n").encode()[:REPORT_CAP])
            return
        os.write(report_fd, TEST_PASSED % index + b"\n")
        send_frame(program[1], ["done"])


def _equality_helper(state: dict) -> Callable[[object, object, str], bool]:
    """The function a rewritten ``assert L == R`` calls: it keeps both sides' reprs in ``state``
    for "expected X, got Y", and refuses a value that also equals a fresh sentinel object."""

    def assert_eq(actual: object, expected: object, source: str) -> bool:
        state.clear()
        equal = bool(actual == expected)
        if equal and (actual == _Unequal() or expected == _Unequal()):
            state.update(source=source, expected=short_repr(expected),
                         actual=short_repr(actual),
                         note="the value compares equal to everything (its __eq__ always answers True)")
            return False
        if not equal:
            state.update(source=source, expected=short_repr(expected), actual=short_repr(actual))
        return equal

    return assert_eq


def _install(names: dict, namespace: dict, installed: dict, program: tuple[int, int]) -> None:
    """Put a stand-in for each of the program's ``names`` into the tests' ``namespace``."""
    for name, spec in names.items():
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


def _failure_report(exc: BaseException, index: int, keep: tuple[str, ...],
                    test_files: tuple[str, ...], helper_state: dict) -> dict:
    """The report of test ``index``, which raised ``exc``: a failed assert of the test's own,
    the program's exception in a call, or the program's process gone or off the protocol."""
    innermost = exc.__traceback__
    while innermost is not None and innermost.tb_next is not None:
        innermost = innermost.tb_next
    in_test = innermost is not None and innermost.tb_frame.f_code.co_filename in test_files
    failed = isinstance(exc, AssertionError) and in_test
    report = error_report(exc, "test", index, keep,
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
    return report


def _joined_traceback(tests: str, program: str) -> str:
    """The judge's test frames followed by the program's own frames and exception."""
    head = [line for line in tests.splitlines(True)[:-1]]  # without the judge's exception line
    tail = program.splitlines(True)
    if tail and tail[0].startswith("Traceback"):
        tail = tail[1:]
    return "".join(head + tail) if head else program


class _Unequal:
    """A fresh object no honest value compares equal to (catches always-equal cheats)."""

    __hash__ = object.__hash__

    def __eq__(self, other: object) -> bool:
        return self is other


class ProgramError(Exception):
    """An exception the program raised in its own process, during a call from a test."""

    __module__ = "__main__"  # feedback names it bare, as it did when the runner was one script


class ProgramGone(Exception):
    """The program's process ended while a test was calling into it."""

    __module__ = "__main__"  # as ProgramError


class ForgedAnswer(Exception):
    """The program's process sent the judge bytes the harness would not have written."""

    __module__ = "__main__"  # as ProgramError


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
        kind = vars(builtins).get(type_name)
        if isinstance(kind, type) and issubclass(kind, Exception) and kind not in (SystemExit,):
            try:
                raised = kind(message.split(": ", 1)[-1])
            except Exception:  # noqa: BLE001 - an exception type that needs other arguments
                raised = ProgramError(message)
        else:
            raised = ProgramError(message)
        raised.program_report = (type_name, message, trace)  # type: ignore[attr-defined]
        raise raised
