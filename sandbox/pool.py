"""A pool of warm runner processes, shared by the local and docker backends.

A backend only says how to start one runner (a ``Channel``: a bubblewrap process, a container);
the pool keeps up to ``workers`` of them alive, sends each job to an idle one, replaces a runner
after ``jobs_per_runner`` jobs or whenever it is lost, and offers a bounded-concurrency async batch
API. A job whose runner dies is retried once on a fresh runner; if that one dies too, the program
is what kills it and the outcome says ``crashed``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor

from sandbox.types import Job, JobError, Outcome, SandboxError, Status

log = logging.getLogger(__name__)

GRACE_S = 10.0  # the runner enforces the job's clock; this only catches a runner that hangs


class ChannelLost(Exception):
    """The runner behind a channel died or stopped answering."""


class Channel(ABC):
    """One warm runner that answers one JSON line per JSON line it is sent."""

    @abstractmethod
    def send(self, line: bytes) -> None: ...

    @abstractmethod
    def _read(self, deadline: float) -> bytes:
        """Some bytes of the runner's stdout ('' at EOF), waiting at most until ``deadline``."""

    @abstractmethod
    def close(self) -> None: ...

    def __init__(self) -> None:
        self._buffer = bytearray()
        self.jobs_done = 0

    def request(self, payload: dict, timeout: float) -> dict:
        """Send one job, return the runner's reply; ``ChannelLost`` if the runner is gone."""
        self.send((json.dumps(payload) + "\n").encode())
        deadline = time.monotonic() + timeout
        while (newline := self._buffer.find(b"\n")) < 0:
            chunk = self._read(deadline)
            if not chunk:
                raise ChannelLost("the runner closed its output")
            self._buffer += chunk
        line, self._buffer = bytes(self._buffer[:newline]), self._buffer[newline + 1:]
        self.jobs_done += 1
        return json.loads(line)


class RunnerPool:
    """Runs jobs on up to ``workers`` warm runners made by ``spawn``."""

    def __init__(self, spawn: Callable[[], Channel], workers: int, jobs_per_runner: int = 500) -> None:
        if workers < 1:
            raise ValueError("workers must be at least 1")
        self._spawn = spawn
        self.workers = workers
        self.jobs_per_runner = jobs_per_runner
        self._idle: list[Channel] = []
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(workers)
        self._closed = False
        # Runners die with the thread that started them (bubblewrap's --die-with-parent is
        # PR_SET_PDEATHSIG), so they are all started from this one long-lived thread.
        self._spawner = ThreadPoolExecutor(1, thread_name_prefix="sandbox-spawn")

    def run(self, job: Job) -> Outcome:
        """Run one job (blocking, thread-safe)."""
        with self._slots:
            for attempt in (1, 2):
                channel = self._checkout()
                try:
                    reply = channel.request(job.to_wire(), job.timeout + GRACE_S)
                except (ChannelLost, OSError, ValueError) as exc:
                    log.warning("sandbox runner lost on attempt %d of job %s: %s", attempt, job.id, exc)
                    self._discard(channel)
                    continue
                self._checkin(channel)
                if "invalid_job" in reply:
                    raise JobError(reply["invalid_job"])
                return Outcome.from_wire(reply)
        return Outcome(
            status=Status.CRASHED, id=job.id, error_type="RunnerKilled",
            message="the sandbox process running the program was killed (twice) while it ran",
            tests_total=len(job.tests),
        )

    async def run_many(self, jobs: Iterable[Job], concurrency: int | None = None,
                       on_done: Callable[[Outcome], None] | None = None) -> list[Outcome]:
        """Run many jobs with at most ``concurrency`` (default: ``workers``) at once.

        Outcomes come back in the jobs' order; ``on_done`` (e.g. a progress bar) is called on
        the event loop as each one finishes. ``concurrency`` threads each take the next job
        until none is left: no task or thread hand-off per job, which on a small machine is a
        measurable share of a job's cost (docs/BENCHMARKS.md).
        """
        pending = list(enumerate(jobs))
        outcomes: list[Outcome | None] = [None] * len(pending)
        taking = threading.Lock()
        loop = asyncio.get_running_loop()

        def worker() -> None:
            while True:
                with taking:
                    if not pending:
                        return
                    index, job = pending.pop()
                outcomes[index] = outcome = self.run(job)
                if on_done is not None:
                    loop.call_soon_threadsafe(on_done, outcome)

        pending.reverse()  # pop() from the end takes the jobs in their given order
        threads = min(concurrency or self.workers, len(pending))
        await asyncio.gather(*(asyncio.to_thread(worker) for _ in range(threads)))
        await asyncio.sleep(0)  # let the last on_done callbacks run before returning
        return [o for o in outcomes if o is not None]

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
            channel.close()
        self._spawner.shutdown(wait=False)

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
        try:
            return self._spawner.submit(self._spawn).result()
        except SandboxError:
            raise
        except Exception as exc:  # noqa: BLE001 - any start failure is a sandbox fault
            raise SandboxError(f"could not start a sandbox runner: {exc}") from exc

    def _checkin(self, channel: Channel) -> None:
        with self._lock:
            if not self._closed and channel.jobs_done < self.jobs_per_runner:
                self._idle.append(channel)
                return
        channel.close()

    def _discard(self, channel: Channel) -> None:
        try:
            channel.close()
        except Exception:  # noqa: BLE001
            log.exception("closing a lost sandbox runner failed")
