"""One job while its processes run: what they write is fed to the grading and the streams'
tails, the rest of its payload is written, the clock is kept; then the processes are killed,
their wait statuses collected and their pipes drained and closed."""

from __future__ import annotations

import os
import select
import signal
import time

from .cleanup import kill_group
from .grading import Grading, Tail
from .reports import REPORT_CAP
from .wire import drain, write_some
from .zygote import Zygote

STREAM_CAP = 4096  # bytes of stdout/stderr tail kept per job
ZYGOTE_ANSWER_S = 10.0  # the zygote answers at once; this only catches one that is gone
EXIT_GRACE_S = 0.02  # after a pass, how long the program's process may take to exit on its own


class JobRun:
    """The runner's hold on one job's processes: their pids, its ends of their pipes, the
    evidence read so far and how the processes ended (``wait_status``, ``judge_status``: None
    when the zygote did not say, because the program killed it)."""

    def __init__(self, job: dict, start: float, pid: int, judge: int | None,
                 pipes: tuple[int, int, int, int, int], payload: memoryview) -> None:
        self.job, self.start, self.pid, self.judge = job, start, pid, judge
        # Ours: the rest of the job to write; the program's stdout, stderr and report; the judge's.
        self.job_w, self.out_r, self.err_r, self.rep_r, self.judge_rep_r = pipes
        self.payload = payload
        self.grading = Grading(job)
        self.stdout, self.stderr = Tail(STREAM_CAP), Tail(STREAM_CAP)
        self.sinks = {self.out_r: self.stdout.feed, self.err_r: self.stderr.feed,
                      self.rep_r: self.grading.feed_program}
        if judge is not None:
            self.sinks[self.judge_rep_r] = self.grading.feed_judge
        self.reports = {self.rep_r: 0, self.judge_rep_r: 0}  # bytes read from each report pipe
        self.timed_out = self.ended = False
        self.wait_status: int | None = None
        self.judge_status: int | None = 0

    def watch(self, zygote: Zygote) -> None:
        """Read the processes' pipes until the verdict is known, the program's process has
        ended (and the judge has said all it will), or the job's time is up."""
        poller, control = self._poller(zygote)
        deadline = self.start + self.job["timeout"]
        passed_at = 0.0
        grading = self.grading
        while self.sinks and grading.failure is None and \
                not (self.ended and self.judge_rep_r not in self.sinks):
            if grading.decided and not passed_at:
                # Passed: the program's process is at its end (os._exit), and exiting on its
                # own costs it less than being killed (docs/BENCHMARKS.md); it gets a moment to.
                passed_at = time.monotonic()
                deadline = min(deadline, passed_at + EXIT_GRACE_S)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.timed_out = not passed_at
                break
            for fd, _ in poller.poll(remaining * 1000):
                self._ready(fd, poller, control, zygote)

    def _poller(self, zygote: Zygote) -> tuple[select.poll, int]:
        """A poll on every pipe to read, the zygote's socket and, until it is written, the job's."""
        poller = select.poll()
        for fd in self.sinks:
            poller.register(fd, select.POLLIN)
        control = zygote.control.fileno()
        poller.register(control, select.POLLIN)  # the zygote answers when the child has ended
        if self.payload:
            poller.register(self.job_w, select.POLLOUT)
        else:
            os.close(self.job_w)
            self.job_w = -1
        return poller, control

    def _ready(self, fd: int, poller: select.poll, control: int, zygote: Zygote) -> None:
        """Act on one descriptor ``poll`` found ready."""
        if fd == self.job_w:
            try:
                self.payload = self.payload[write_some(self.job_w, self.payload):]
            except OSError:  # the child is gone
                self.payload = self.payload[:0]
            if not self.payload:
                poller.unregister(self.job_w)
                os.close(self.job_w)
                self.job_w = -1
        elif fd == control:
            if not self.ended:
                self.ended = True
                self.wait_status = zygote.answer(time.monotonic() + ZYGOTE_ANSWER_S)
            poller.unregister(control)
        elif fd in self.sinks and (chunk := os.read(fd, 65536)):
            if fd in self.reports:
                self.reports[fd] += len(chunk)
                if self.reports[fd] > REPORT_CAP:
                    return
            self.sinks[fd](chunk)
        elif fd in self.sinks:
            poller.unregister(fd)
            del self.sinks[fd]

    def collect(self, zygote: Zygote) -> None:
        """Kill the job's process groups, take their wait statuses, keep what their pipes still
        hold (a grandchild may hold them open) and close them."""
        for child in (self.pid, self.judge):
            if child is not None:
                kill_group(child)
                try:
                    os.kill(child, signal.SIGKILL)  # in case it had not yet made its own group
                except ProcessLookupError:
                    pass
        if not self.ended:
            self.wait_status = zygote.answer(time.monotonic() + ZYGOTE_ANSWER_S)
        if self.judge is not None:
            self.judge_status = zygote.answer(time.monotonic() + ZYGOTE_ANSWER_S)
        # Drain what is already buffered: the child is gone, but a grandchild may hold the pipes.
        out_r, err_r, rep_r, judge_rep_r = self.out_r, self.err_r, self.rep_r, self.judge_rep_r
        for fd in (out_r, err_r) if self.grading.decided else (out_r, err_r, rep_r, judge_rep_r):
            if fd in self.sinks:
                drain(fd, self.sinks[fd],
                      REPORT_CAP - self.reports[fd] if fd in self.reports else 2**20)
        for fd in (out_r, err_r, rep_r, self.job_w, judge_rep_r):
            if fd >= 0:
                os.close(fd)
