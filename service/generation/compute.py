"""The one thread that runs the embedded backend's tensor work, requests interleaved by steps.

Why one thread: torch's CPU kernels split their work over an OpenMP thread team, and GNU OpenMP
keeps a team per calling OS thread. Once two teams are alive and their threads outnumber the
cores, libgomp stops spinning between parallel regions, so every kernel wakes its team through
the kernel: the hundreds of small kernels of a decode step each pay for it (measured in
docs/BENCHMARKS.md). Requests used to run on whichever executor thread asyncio handed them, each
with its own team; now every forward pass, sampling step, model load and adapter merge runs on
this thread and there is one team.

Why steps: requests still share the model pass by pass, as they did under the model lock. A
request is a generator that yields before each forward pass (``Steps``); the thread runs one
step of each waiting job in turn, so a short request is not stuck behind a long one, and an
adapter load (a one-step job) runs between two passes of a running generation.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Callable, Generator
from concurrent.futures import Future
from typing import Any, ParamSpec, TypeVar

T = TypeVar("T")
P = ParamSpec("P")
Steps = Generator[None, None, T]  # yields before each forward pass; returns the result


def drive(steps: Steps[T]) -> T:
    """Run ``steps`` to the end in this thread (no other job interleaves)."""
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value


def blocking(steps_fn: Callable[P, Steps[T]]) -> Callable[P, T]:
    """The blocking form of a step function: its steps run to the end in the calling thread."""
    def run(*args: P.args, **kwargs: P.kwargs) -> T:
        return drive(steps_fn(*args, **kwargs))

    run.__doc__ = f"``{steps_fn.__name__}`` run to the end in the calling thread."
    return run


def _once(fn: Callable[[], T]) -> Steps[T]:
    """``fn`` as a job of one step."""
    yield from ()
    return fn()


class _Job:
    def __init__(self, steps: Steps[Any]) -> None:
        self.steps, self.future = steps, Future()
        self.abandoned = False  # its caller stopped waiting: drop it at its next turn


class ComputeThread:
    """A daemon thread that runs jobs (step generators or plain calls) round-robin by step."""

    def __init__(self, name: str = "leti-compute") -> None:
        self._jobs: deque[_Job] = deque()
        self._ready = threading.Condition()
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    def on_thread(self) -> bool:
        return threading.current_thread() is self._thread

    def submit(self, work: Steps[T] | Callable[[], T]) -> Future[T]:
        """Queue ``work``; its future holds the result or the exception it raised."""
        return self._queue(work).future

    def _queue(self, work: Steps[Any] | Callable[[], Any]) -> _Job:
        job = _Job(work if isinstance(work, Generator) else _once(work))
        with self._ready:
            self._jobs.append(job)
            self._ready.notify()
        return job

    def call(self, work: Steps[T] | Callable[[], T]) -> T:
        """Run ``work`` on this thread and wait for it; inline when already on it (no deadlock)."""
        if self.on_thread():
            return drive(work) if isinstance(work, Generator) else work()
        return self.submit(work).result()

    async def run(self, work: Steps[T] | Callable[[], T]) -> T:
        """``call`` for async callers: the event loop stays free while ``work`` runs. When the
        caller is cancelled (a client gone, a loop stopped), the job stops at its next step."""
        job = self._queue(work)
        try:
            return await asyncio.shield(asyncio.wrap_future(job.future))
        except asyncio.CancelledError:
            job.abandoned = True
            raise

    def _serve(self) -> None:
        while True:
            with self._ready:
                self._ready.wait_for(lambda: bool(self._jobs))
                job = self._jobs.popleft()
            future = job.future
            if not future.running() and not future.set_running_or_notify_cancel():
                job.steps.close()  # cancelled before its first step
                continue
            if job.abandoned:
                job.steps.close()  # runs its cleanup (finally blocks) here, on this thread
                future.set_exception(asyncio.CancelledError())
                continue
            try:
                next(job.steps)
            except StopIteration as done:
                future.set_result(done.value)
                continue
            except BaseException as exc:  # noqa: BLE001 - the caller gets it through the future
                future.set_exception(exc)
                continue
            with self._ready:
                self._jobs.append(job)


_shared: ComputeThread | None = None
_shared_lock = threading.Lock()


def compute_thread() -> ComputeThread:
    """The process's compute thread (started on first use): one per process, as the OpenMP team
    it keeps warm is."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = ComputeThread()
        return _shared
