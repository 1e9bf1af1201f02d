"""The zygote: a small, idle copy of the runner that forks each job's processes on request."""

from __future__ import annotations

import gc
import marshal
import os
import select
import signal
import socket
import time
from collections.abc import Callable

from .child import start_child, unsafe_execute
from .grading import Grading
from .jobs import child_payload, validate_job
from .judge import start_judge
from .plans import compile_program

CHILD_FDS = 6  # the program's process gets: job in; stdout, stderr, report out; from/to the judge
# Trusted jobs the zygote runs in itself once, before its first fork (``_warm_up``): values
# sent back, and an exception, the paths a program's process takes.
WARM_UP_JOBS = (
    {"program": "def pairs(xs):\n    return [(x, 2 * x) for x in sorted(xs)]\n",
     "tests": ["assert pairs([2, 1]) == [(1, 2), (2, 4)]", "assert len(pairs('ab')) == 2"]},
    {"program": "def half(n):\n    return {n: n / 2, 'n': {n}}\n", "tests": ["assert half(4) == 3"]},
    {"program": "def first(xs):\n    return xs[0]\n", "tests": ["assert first([]) == None"]},
)


class Zygote:
    """A small, idle copy of the runner that forks each job's processes on request.

    Why not fork from the runner itself: on the VMs this sandbox runs on, a page fault costs
    many times a system call, and after a fork every page of the forking process is
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
            pass  # already gone (a sweep) and reaped (reap)


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

    def spawn(start: Callable[..., None]) -> int:
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
        pid = spawn(start_child)
        judge = spawn(start_judge)
        send(waitpid(pid, 0)[1].to_bytes(4, "little"))
        if judge:
            send(waitpid(judge, 0)[1].to_bytes(4, "little"))


def _warm_up() -> None:
    """Run ``WARM_UP_JOBS`` here, in the zygote, exactly as a child runs a job (minus limits).

    A child's first steps write pages that the next child would write again: type attribute
    caches filled, names interned, lazily bound symbols resolved, the report and traceback
    code used for the first time. Done once in the zygote, those writes are inherited instead:
    fewer copy-on-write faults in every job (docs/BENCHMARKS.md).
    """
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        for spec in WARM_UP_JOBS:
            job = validate_job(spec)
            code, _ = compile_program(job["program"])
            unsafe_execute(marshal.loads(child_payload(job, code, os.getcwd())), devnull)
            grading = Grading(job)  # not needed by the children, but the same first-use pages
            grading.feed_program(b"V 1 2\n")
    finally:
        os.close(devnull)
