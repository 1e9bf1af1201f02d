"""run_many keeps each runner's next job waiting in its pipe: what happens when a runner dies with
a job queued behind the one it runs, and when runners retire. Runners here are in-process doubles
that speak the protocol (the real ones are covered by every other sandbox test)."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from sandbox import Job, JobError, Status
from sandbox.channel import Channel
from sandbox.pool import PIPELINE_DEPTH, RunnerPool


class ScriptedRunner(Channel):
    """Answers each job ``passed``; dies (closes its output) when a job named ``dies-*`` is
    the one it would run, the first time any runner meets that job."""

    deaths: set[str] = set()
    started: list[ScriptedRunner] = []

    def __init__(self, cpu_slot: int | None = None) -> None:
        super().__init__()
        self.cpu_slot = cpu_slot
        self.received: list[str] = []
        self.unanswered: list[dict] = []
        self.dead = False
        ScriptedRunner.started.append(self)

    def send(self, line: bytes) -> None:
        job = json.loads(line)
        self.received.append(job["id"])
        self.unanswered.append(job)

    def _read(self, deadline: float) -> bytes:
        job = self.unanswered.pop(0)
        if job["id"].startswith("dies-") and job["id"] not in ScriptedRunner.deaths:
            ScriptedRunner.deaths.add(job["id"])
            self.dead = True
            return b""
        reply = {"id": job["id"], "status": "passed", "tests_total": 1, "tests_passed": 1}
        if job["id"].startswith("invalid-"):
            reply = {"id": job["id"], "invalid_job": "'tests' must be a list of strings"}
        return (json.dumps(reply) + "\n").encode()

    def close(self) -> None:
        self.dead = True


def batch(ids: list[str], workers: int = 1, jobs_per_runner: int = 500,
          pin_cpus: bool = True) -> list:
    ScriptedRunner.deaths, ScriptedRunner.started = set(), []
    jobs = [Job("x = 1\n", ("assert x == 1",), id=job_id) for job_id in ids]
    round_trips: list[float] = []
    with RunnerPool(ScriptedRunner, workers=workers, jobs_per_runner=jobs_per_runner,
                    pin_cpus=pin_cpus) as pool:
        outcomes = asyncio.run(pool.run_many(jobs, round_trips=round_trips))
    assert len(round_trips) == len(ids) and all(0 <= t < 5 for t in round_trips)
    return outcomes


def test_the_next_job_is_sent_before_the_current_one_is_answered() -> None:
    assert PIPELINE_DEPTH == 2
    outcomes = batch(["a", "b", "c"])
    assert [o.id for o in outcomes] == ["a", "b", "c"] and all(o.passed for o in outcomes)
    (runner,) = ScriptedRunner.started
    assert runner.received == ["a", "b", "c"]


def test_a_job_queued_behind_a_lost_runner_runs_on_the_next_one() -> None:
    start = time.monotonic()
    outcomes = batch(["a", "dies-b", "c", "d"])
    assert time.monotonic() - start < 5
    # dies-b killed its runner once and passed on the retry; c, queued behind it, was sent again
    assert [(o.id, o.status) for o in outcomes] == [(i, Status.PASSED) for i in ("a", "dies-b", "c", "d")]
    first, *others = ScriptedRunner.started
    assert first.received == ["a", "dies-b", "c"] and first.dead
    assert sum(r.received.count("c") for r in others) == 1


def test_runners_retire_after_their_quota_without_losing_queued_jobs() -> None:
    outcomes = batch([f"j{i}" for i in range(7)], jobs_per_runner=3)
    assert [o.id for o in outcomes] == [f"j{i}" for i in range(7)]
    assert [r.received for r in ScriptedRunner.started] == [["j0", "j1", "j2"], ["j3", "j4", "j5"], ["j6"]]


def test_an_invalid_job_is_a_job_error_not_a_lost_runner() -> None:
    with pytest.raises(JobError, match="must be a list"):
        batch(["a", "invalid-b", "c"])
    assert len(ScriptedRunner.started) == 1  # the runner answered: nobody retried on a new one


def test_each_runner_gets_a_cpu_slot_and_a_replacement_takes_the_freed_one() -> None:
    ScriptedRunner.deaths, ScriptedRunner.started = set(), []
    with RunnerPool(ScriptedRunner, workers=2) as pool:
        pool.warm_up()  # both runners live at once: slots 0 and 1
        assert sorted(r.cpu_slot for r in ScriptedRunner.started) == [0, 1]
        # "dies-*" kills the runner that meets it (the retry runs on the other one) ...
        job = Job("x = 1\n", ("assert x == 1",), id="dies-x")
        assert asyncio.run(pool.run_many([job], concurrency=1))[0].passed
        (killed,) = [r for r in ScriptedRunner.started if r.dead]
        pool.warm_up()  # ... and its replacement takes its slot, not the other one's CPU
        assert len(ScriptedRunner.started) == 3
        assert ScriptedRunner.started[2].cpu_slot == killed.cpu_slot


def test_retired_runners_hand_their_slot_on_and_pinning_can_be_turned_off() -> None:
    batch([f"j{i}" for i in range(7)], jobs_per_runner=3)
    assert [r.cpu_slot for r in ScriptedRunner.started] == [0, 0, 0]
    batch(["a", "b"], pin_cpus=False)
    assert [r.cpu_slot for r in ScriptedRunner.started] == [None]
