"""A pool of warm runner processes, shared by the local and docker backends.

A backend only says how to start one runner (a ``Channel``: a bubblewrap process, a container);
the pool keeps up to ``workers`` of them alive, sends each job to an idle one, replaces a runner
after ``jobs_per_runner`` jobs or whenever it is lost, and offers a bounded-concurrency async batch
API. A job whose runner dies is retried once on a fresh runner; if that one dies too, the program
is what kills it and the outcome says ``crashed``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor

from sandbox.channel import Channel, ChannelLost
from sandbox.types import Job, JobError, Outcome, SandboxError, Status

log = logging.getLogger(__name__)

PIPELINE_DEPTH = 2  # jobs a batch keeps sent to one runner: the one it runs, and the next
GRACE_S = 10.0  # the runner enforces the job's clock; this only catches a runner that hangs


def _outcome(job: Job, reply: dict) -> Outcome:
    if "invalid_job" in reply:
        raise JobError(reply["invalid_job"])
    return Outcome.from_wire(reply)


def _killed(job: Job) -> Outcome:
    return Outcome(
        status=Status.CRASHED, id=job.id, error_type="RunnerKilled",
        message="the sandbox process running the program was killed (twice) while it ran",
        tests_total=len(job.tests),
    )


class _JobQueue:
    """The jobs of one ``run_many`` call, with their positions, taken in order by its threads."""

    def __init__(self, jobs: Iterable[Job]) -> None:
        self._items = list(enumerate(jobs))
        self._items.reverse()  # pop() from the end takes the jobs in their given order
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._items)

    def take(self) -> tuple[int, Job] | None:
        with self._lock:
            return self._items.pop() if self._items else None

    def give_back(self, items: list[tuple[int, Job]]) -> None:
        """Put jobs that never ran back at the front, to be taken next."""
        with self._lock:
            self._items.extend(reversed(items))


class RunnerPool:
    """Runs jobs on up to ``workers`` warm runners made by ``spawn``.

    ``spawn(cpu_slot)`` starts one runner. With ``pin_cpus`` each live runner holds a slot in
    ``range(workers)`` (a freed one is reused) and pins itself, with its zygote and its jobs'
    children, to CPU ``slot % (CPUs it may use)`` (``pin_to_cpu`` in the runner): every process of
    a job then runs where the previous one left its caches, and none waits for a wake-up from
    another CPU (measured in docs/BENCHMARKS.md, "Sandbox"). Without it the
    slot is None and the scheduler places runners as it likes.
    """

    def __init__(self, spawn: Callable[[int | None], Channel], workers: int,
                 jobs_per_runner: int = 500, pin_cpus: bool = True) -> None:
        if workers < 1:
            raise ValueError("workers must be at least 1")
        self._spawn = spawn
        self.workers = workers
        self.jobs_per_runner = jobs_per_runner
        self.pin_cpus = pin_cpus
        self._slot_of: dict[Channel, int] = {}  # the live runners' CPU slots
        self._runners_in_slot = [0] * workers  # live or starting
        self._idle: list[Channel] = []
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(workers)
        self._closed = False
        # Runners die with the thread that started them (bubblewrap's --die-with-parent is
        # PR_SET_PDEATHSIG), so they are all started from this one long-lived thread.
        self._spawner = ThreadPoolExecutor(1, thread_name_prefix="sandbox-spawn")
        # run_many's threads, each keeping one runner busy (those beyond ``workers`` wait for a
        # runner): its own, so that batches never occupy the event loop's default executor.
        self._batch_threads = ThreadPoolExecutor(4 * workers, thread_name_prefix="sandbox-batch")

    def run(self, job: Job) -> Outcome:
        """Run one job (blocking, thread-safe)."""
        with self._slots:
            return self._attempt(job, attempts=2)

    def _attempt(self, job: Job, attempts: int) -> Outcome:
        """Run ``job`` on an idle runner, on a fresh one each time a runner dies under it."""
        for attempt in range(1, attempts + 1):
            channel = self._checkout()
            try:
                reply = channel.request(job.to_wire(), job.timeout + GRACE_S)
            except (ChannelLost, OSError, ValueError) as exc:
                log.warning("sandbox runner lost on attempt %d of job %s: %s", attempt, job.id, exc)
                self._discard(channel)
                continue
            self._checkin(channel)
            return _outcome(job, reply)
        return _killed(job)

    async def run_many(self, jobs: Iterable[Job], concurrency: int | None = None,
                       on_done: Callable[[Outcome], None] | None = None,
                       round_trips: list[float] | None = None) -> list[Outcome]:
        """Run many jobs with at most ``concurrency`` (default: ``workers``) at once.

        Outcomes come back in the jobs' order; ``on_done`` (e.g. a progress bar) is called on
        the event loop as each one finishes, and ``round_trips`` (if given) gets each job's
        seconds from being sent to being answered. ``concurrency`` threads each keep one runner
        busy until no job is left: no task or thread hand-off per job, and the runner is sent
        its next job (``PIPELINE_DEPTH``) while it runs the current one, so it reads that job as
        soon as it is free instead of waiting for this process to answer and send. Each runner
        still runs one job at a time, and a job's clock starts when its runner reads it.
        """
        queue = _JobQueue(jobs)
        outcomes: list[Outcome | None] = [None] * len(queue)
        loop = asyncio.get_running_loop()

        def finish(index: int, outcome: Outcome, sent_at: float) -> None:
            if round_trips is not None:
                round_trips.append(time.perf_counter() - sent_at)
            outcomes[index] = outcome
            if on_done is not None:
                loop.call_soon_threadsafe(on_done, outcome)

        threads = min(concurrency or self.workers, len(queue))
        if self._closed:
            raise SandboxError("the sandbox pool is closed")
        await asyncio.gather(*(loop.run_in_executor(self._batch_threads, self._keep_a_runner_busy,
                                                    queue, finish) for _ in range(threads)))
        await asyncio.sleep(0)  # let the last on_done callbacks run before returning
        return [o for o in outcomes if o is not None]

    def _keep_a_runner_busy(self, queue: _JobQueue,
                            finish: Callable[[int, Outcome, float], None]) -> None:
        """One of ``run_many``'s threads: feeds one runner until the queue is empty."""
        with self._slots:
            channel: Channel | None = None
            sent: deque[tuple[int, Job, float]] = deque()  # sent to `channel`, not yet answered
            try:
                while True:
                    channel, broken = self._send_ahead(channel, sent, queue)
                    if not sent:
                        if not broken:
                            return  # no job left
                        assert channel is not None  # a send to it failed
                        self._discard(channel)  # it died between jobs: a fresh one
                        channel = None
                        continue
                    assert channel is not None  # the jobs in `sent` went to it
                    index, job, sent_at = sent.popleft()
                    try:
                        reply = channel.reply(job.timeout + GRACE_S)
                    except (ChannelLost, OSError, ValueError) as exc:
                        log.warning("sandbox runner lost on attempt 1 of job %s: %s", job.id, exc)
                        self._discard(channel)
                        channel = None
                        queue.give_back([(i, j) for i, j, _ in sent])  # they never ran
                        sent.clear()
                        outcome = self._attempt(job, attempts=1)
                    else:
                        outcome = _outcome(job, reply)  # JobError for an invalid job
                    finish(index, outcome, sent_at)
                    if channel is not None and not sent \
                            and channel.jobs_done >= self.jobs_per_runner:
                        self._checkin(channel)  # retired: the next job gets a fresh runner
                        channel = None
            finally:
                if channel is not None:
                    self._checkin(channel) if not sent else self._discard(channel)

    def _send_ahead(self, channel: Channel | None, sent: deque[tuple[int, Job, float]],
                    queue: _JobQueue) -> tuple[Channel | None, bool]:
        """Send queued jobs to ``channel`` (checked out here if None) until ``PIPELINE_DEPTH``
        are unanswered, the runner's quota is reached or no job is left.

        Returns the channel and whether a send failed (the runner is gone)."""
        while len(sent) < PIPELINE_DEPTH and (
                channel is None or channel.jobs_done + len(sent) < self.jobs_per_runner):
            if (taken := queue.take()) is None:
                break
            channel = channel or self._checkout()
            try:
                channel.submit(taken[1].to_wire())
            except (ChannelLost, OSError):  # gone: the answers already sent will say so
                queue.give_back([taken])
                return channel, True
            sent.append((*taken, time.perf_counter()))
        return channel, False

    def warm_up(self) -> None:
        """Start every runner now rather than on first use."""
        channels = [self._checkout() for _ in range(self.workers)]
        for channel in channels:
            self._checkin(channel)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for channel in idle:
            self._close(channel)
        self._spawner.shutdown(wait=False)
        self._batch_threads.shutdown(wait=False)

    def __enter__(self) -> RunnerPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _checkout(self) -> Channel:
        with self._lock:
            if self._closed:
                raise SandboxError("the sandbox pool is closed")
            if self._idle:
                return self._idle.pop()
        slot = self._take_slot() if self.pin_cpus else None
        try:
            channel = self._spawner.submit(self._spawn, slot).result()
        except Exception as exc:  # noqa: BLE001 - any start failure is a sandbox fault
            self._give_slot_back(slot)
            if isinstance(exc, SandboxError):
                raise
            raise SandboxError(f"could not start a sandbox runner: {exc}") from exc
        if slot is not None:
            with self._lock:
                self._slot_of[channel] = slot
        return channel

    def _take_slot(self) -> int:
        """Reserve the CPU slot that the fewest runners hold (a free one, when there is one)."""
        with self._lock:
            slot = min(range(self.workers), key=self._runners_in_slot.__getitem__)
            self._runners_in_slot[slot] += 1
        return slot

    def _give_slot_back(self, slot: int | None) -> None:
        if slot is not None:
            with self._lock:
                self._runners_in_slot[slot] -= 1

    def _checkin(self, channel: Channel) -> None:
        with self._lock:
            if not self._closed and channel.jobs_done < self.jobs_per_runner:
                self._idle.append(channel)
                return
        self._close(channel)

    def _discard(self, channel: Channel) -> None:
        try:
            self._close(channel)
        except Exception:  # noqa: BLE001
            log.exception("closing a lost sandbox runner failed")

    def _close(self, channel: Channel) -> None:
        with self._lock:
            slot = self._slot_of.pop(channel, None)
        self._give_slot_back(slot)
        channel.close()
