"""The compute thread: one OS thread runs every request's tensor work, requests interleaved by
forward pass, results and errors handed back to their callers."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from service.generation import SamplingParams
from service.generation.compute import ComputeThread, Steps, compute_thread


def _counter(name: str, steps: int, log: list[str]) -> Steps[str]:
    for i in range(steps):
        yield
        log.append(f"{name}{i}")
    return name


def test_jobs_take_turns_step_by_step() -> None:
    worker, log = ComputeThread(), []
    gate = threading.Event()
    blocker = worker.submit(gate.wait)  # holds the thread while both jobs are queued
    long, short = worker.submit(_counter("a", 4, log)), worker.submit(_counter("b", 2, log))
    gate.set()
    assert blocker.result(timeout=10) and long.result(timeout=10) == "a"
    assert short.result(timeout=10) == "b"
    # The short job finished after two of the long job's steps, not after all four.
    assert log == ["a0", "b0", "a1", "b1", "a2", "a3"]


def test_errors_reach_the_caller_and_the_thread_goes_on() -> None:
    worker = ComputeThread()

    def broken() -> Steps[None]:
        yield
        raise ValueError("bad request")

    with pytest.raises(ValueError, match="bad request"):
        worker.call(broken())
    assert worker.call(lambda: 41 + 1) == 42


def test_call_from_the_thread_itself_runs_inline() -> None:
    worker = ComputeThread()
    # A job that calls back into its own thread must not wait on itself.
    assert worker.call(lambda: worker.call(lambda: threading.current_thread().name)) == (
        "leti-compute")


def test_a_job_cancelled_before_it_starts_never_runs() -> None:
    worker, ran = ComputeThread(), []
    gate = threading.Event()
    worker.submit(gate.wait)
    queued = worker.submit(lambda: ran.append(1))
    assert queued.cancel()
    gate.set()
    assert worker.call(lambda: "after") == "after" and ran == []


async def test_requests_run_on_one_thread_and_interleave_by_pass(tiny_generator: Any) -> None:
    """Two concurrent requests: every forward pass on the compute thread (one OpenMP team),
    and the short request done before the long one (they share the model pass by pass)."""
    engine = tiny_generator.fast_engine
    threads, passes = set(), []
    decode = engine.decode

    def recording(weights: Any, tokens: Any, cache: Any) -> Any:
        threads.add(threading.get_ident())
        passes.append(len(tokens))
        return decode(weights, tokens, cache)

    engine.decode = recording
    finished: list[str] = []

    async def request(name: str, tokens: int, n: int) -> None:
        await tiny_generator.generate(["def f(x):"], SamplingParams(n=n, max_new_tokens=tokens,
                                                                   seed=1))
        finished.append(name)

    await asyncio.gather(request("long", 40, 3), request("short", 4, 2))
    assert threads == {compute_thread().call(threading.get_ident)}
    assert finished == ["short", "long"]
    assert 3 in passes and 2 in passes  # both requests' own batches decoded


async def test_a_cancelled_caller_stops_its_job_at_the_next_step() -> None:
    worker, log = ComputeThread(), []
    started, cleaned = threading.Event(), []

    def slow() -> Steps[None]:
        try:
            for i in range(1000):
                yield
                log.append(i)
                started.set()
                time.sleep(0.005)
        finally:
            cleaned.append(threading.current_thread().name)

    task = asyncio.create_task(worker.run(slow()))
    await asyncio.to_thread(started.wait, 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert worker.call(lambda: "next job") == "next job"
    assert 0 < len(log) < 1000  # stopped part way, not run to the end
    assert cleaned == ["leti-compute"]  # its cleanup ran, on the compute thread
