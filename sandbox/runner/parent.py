"""The runner's side of each job: ask the zygote for the job's processes, hand them the job,
watch them (``watch.py``), decide and clean up."""

from __future__ import annotations

import os
import time

from .cleanup import alive, reap, reset_scratch, sweep
from .grading import make_outcome
from .jobs import child_payload, judge_payload, prepare_job
from .plans import JUDGED
from .watch import ZYGOTE_ANSWER_S, JobRun
from .wire import write_all, write_some
from .zygote import Zygote


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
        ends = self._fork_program()
        job, early = prepare_job(line, start)
        if early is not None:
            self._release(ends)
            return early
        assert job is not None  # prepare_job gives a job or an early answer
        run = self._start(job, start, ends)
        run.watch(self.zygote)
        run.collect(self.zygote)
        return self._finish(run)

    def _fork_program(self) -> tuple[int, int, int, int, int, int]:
        """Have the zygote fork the next job's program process; our ends of its pipes: job,
        stdout, stderr, report, and the judge's pair (requests to it, answers from it)."""
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
        return job_w, out_r, err_r, rep_r, req_w, ans_r

    def _release(self, ends: tuple[int, int, int, int, int, int]) -> None:
        """Let an early-forked child go unused: it reads an empty job and exits at once."""
        job_w, out_r, err_r, rep_r, req_w, ans_r = ends
        os.close(ans_r)
        os.close(req_w)
        self.zygote.no_judge()
        os.close(job_w)
        self.zygote.answer(time.monotonic() + ZYGOTE_ANSWER_S)  # its pid
        self.zygote.answer(time.monotonic() + ZYGOTE_ANSWER_S)  # its end
        for fd in (out_r, err_r, rep_r):
            os.close(fd)
        reap()

    def _start(self, job: dict, start: float, ends: tuple[int, int, int, int, int, int]) -> JobRun:
        """Fork the judge if the job has JUDGED tests, and send each process its part of the job."""
        job_w, out_r, err_r, rep_r, req_w, ans_r = ends
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
        payload = payload[write_some(job_w, payload):]
        pid = self.zygote.answer(start + ZYGOTE_ANSWER_S)
        judge = self.zygote.answer(start + ZYGOTE_ANSWER_S) if judged else None
        if pid is None or (judged and judge is None):
            raise RuntimeError("the sandbox's zygote process does not answer")
        if judged:
            write_all(judge_w, judge_payload(job, self.workdir))
            os.close(judge_w)
        return JobRun(job, start, pid, judge, (job_w, out_r, err_r, rep_r, judge_rep_r), payload)

    def _finish(self, run: JobRun) -> dict:
        """The job's outcome, once its processes are gone; then nothing of it is left."""
        killed = run.wait_status is None or run.judge_status is None
        if run.wait_status is not None and run.judge_status is not None:
            status = run.grading.result(os.waitstatus_to_exitcode(run.wait_status),
                                        run.timed_out and not run.grading.decided)
        else:  # the program killed its parent, the zygote
            status = {"status": "crashed", "error_type": "RunnerKilled",
                      "message": "the program killed the sandbox process that started it",
                      "tests_passed": run.grading.next}
        if self.sweep and (killed or self._strays()):
            sweep()  # from the namespace's init, kill(-1) reaches all the rest: the zygote too
        reap()
        if killed or not alive(self.zygote.pid):
            self._new_zygote()
        reset_scratch(self.workdir, self.sweep)
        return make_outcome(run.job, status, run.stdout, run.stderr, run.start)

    def _new_zygote(self) -> None:
        self.zygote.close()
        self.zygote = Zygote()

    def _strays(self) -> bool:
        """Whether any process but this one, the zygote and the namespace's init is alive."""
        spared = self.spared | {self.zygote.pid}
        return any(entry.isdigit() and int(entry) not in spared for entry in os.listdir("/proc"))
