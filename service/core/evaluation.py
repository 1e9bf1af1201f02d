"""Evaluate programs: resolve what to run, run it in the sandbox off the event loop, store it.

A request becomes (sample, job) pairs, the jobs run concurrently through the sandbox (never on
the event loop thread), and all samples, executions and triples are written in one transaction
that commits before the answer is sent.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

import anyio.to_thread

from sandbox import Job, JobError, Outcome, RunnerPool, SandboxError, render_feedback
from service.core.config import Settings
from service.core.errors import InvalidRequest, NotFound, Unavailable, check_limit
from service.core.programs import SubmittedTests, TaskTests, executed_program, task_job
from service.store.db import Store
from service.store.models import Label, SampleRow
from service.store.samples import (
    ExecutionRecord,
    NewSample,
    add_execution,
    add_samples,
    get_samples,
    task_of,
    unexecuted_samples,
)
from service.store.tasks import ensure_user_task, get_task


class SandboxExecutor:
    """The sandbox as the service uses it, a bounded async executor of jobs: every batch (one
    program or many, from the API or the loop) goes through the pool's pipelined ``run_many``,
    the path ``leti bench sandbox`` measures. The pool bounds concurrency (one job per runner,
    its next one queued behind it); ``in_flight`` counts the programs handed to it and not yet
    answered."""

    def __init__(self, pool: RunnerPool, backend: str) -> None:
        self.pool = pool
        self.backend = backend
        self.in_flight = 0  # programs running or queued in the pool now

    async def run(self, job: Job) -> Outcome:
        return (await self.run_many([job]))[0]

    async def run_many(self, jobs: Sequence[Job]) -> list[Outcome]:
        if not jobs:
            return []
        self.in_flight += len(jobs)
        try:
            return await self.pool.run_many(jobs)
        except SandboxError as exc:
            raise Unavailable("sandbox", str(exc)) from exc
        except JobError as exc:
            raise InvalidRequest(f"the sandbox refused a job: {exc}") from exc
        finally:
            self.in_flight -= len(jobs)

    async def check(self) -> str:
        """"ok" when a trivial program passes; a busy sandbox (every runner taken) is working."""
        if self.in_flight >= self.pool.workers:
            return "ok"
        outcome = await self.run(Job(program="", tests=("assert True",), timeout=5.0))
        return "ok" if outcome.passed else f"a trivial program ended {outcome.status.value}"

    def close(self) -> None:
        self.pool.close()


@dataclass(frozen=True)
class Evaluated:
    """One program's result, as stored."""

    sample_id: str
    task_id: str
    execution_id: str
    outcome: Outcome
    feedback: str
    reward: Label
    score: float


@dataclass(frozen=True)
class EvaluationInput:
    """What to evaluate: sample ids; programs with tests; or a task id (with programs or not)."""

    sample_ids: list[str] | None = None
    programs: list[str] | None = None
    tests: list[str] | None = None
    setup: str = ""
    instruction: str = ""
    task_id: str | None = None
    timeout: float | None = None


@dataclass(frozen=True)
class _Planned:
    sample: NewSample | None  # to create (submitted programs)
    existing: SampleRow | None  # already stored
    job: Job


def execution_record(outcome: Outcome, backend: str) -> ExecutionRecord:
    """LETI's reward is binary: only a pass is good."""
    data = outcome.to_dict()
    data.pop("extra", None)
    return ExecutionRecord(status=outcome.status.value, feedback=render_feedback(outcome),
                           reward="good" if outcome.passed else "bad",
                           score=1.0 if outcome.passed else 0.0,
                           tests_passed=outcome.tests_passed, tests_total=outcome.tests_total,
                           duration_ms=outcome.duration_ms, outcome=data, backend=backend)


class Evaluator:
    """Runs the evaluate use cases against one store and one sandbox."""

    def __init__(self, store: Store, sandbox: SandboxExecutor, settings: Settings,
                 on_outcome: Callable[[Outcome], None] | None = None) -> None:
        self.store = store
        self.sandbox = sandbox
        self.settings = settings
        self._on_outcome = on_outcome or (lambda outcome: None)

    def _checked_job(self, task: TaskTests, program: str, timeout: float | None) -> Job:
        """``task_job`` within the server's limits: a request over them is refused (413/400)
        before anything runs or is stored."""
        size = len(program.encode("utf-8"))
        check_limit(size, self.settings.max_program_bytes, "a program's size in bytes",
                    "LETI_MAX_PROGRAM_BYTES")
        check_limit(len(task.tests), self.settings.max_tests, "the number of tests",
                    "LETI_MAX_TESTS")
        limit = self.settings.sandbox_timeout_s
        if timeout is not None and timeout > limit:
            raise InvalidRequest(f"timeout {timeout:g} s is over the server's limit of "
                                 f"{limit:g} s (LETI_SANDBOX_TIMEOUT_S)")
        try:
            return task_job(task, program, timeout=timeout or limit,
                            memory_mb=self.settings.sandbox_memory_mb)
        except JobError as exc:
            raise InvalidRequest(str(exc)) from exc

    def _count(self, n: int) -> None:
        if n == 0:
            raise InvalidRequest("nothing to evaluate: give at least one program")
        check_limit(n, self.settings.max_programs, "the number of programs",
                    "LETI_MAX_PROGRAMS")

    # -- resolving a request into planned jobs -------------------------------------------

    def plan_programs(self, programs: Sequence[str], tests: Sequence[str], setup: str,
                      instruction: str, timeout: float | None) -> list[_Planned]:
        """Programs with their own tests: stored under the user task with this content."""
        self._count(len(programs))
        if not tests:
            raise InvalidRequest("programs without a task_id need 'tests' to run against")
        submitted = SubmittedTests(tuple(tests), setup)
        jobs = [self._checked_job(submitted, p, timeout) for p in programs]  # before storing
        with self.store.write() as session:
            task = ensure_user_task(session, instruction, tests, setup)
        return [_Planned(NewSample(task.id, p, origin="submitted"), None, job)
                for p, job in zip(programs, jobs, strict=True)]

    def plan_task_programs(self, task_id: str, programs: Sequence[str],
                           timeout: float | None) -> list[_Planned]:
        self._count(len(programs))
        with self.store.read() as session:
            task = get_task(session, task_id)
        if task is None:
            raise NotFound(f"no task {task_id!r} (list them with GET /v1/tasks)")
        planned = []
        for text in programs:
            program = executed_program(task, text)
            planned.append(_Planned(NewSample(task.id, program, origin="submitted"), None,
                                    self._checked_job(task, program, timeout)))
        return planned

    def plan_samples(self, sample_ids: Sequence[str], timeout: float | None) -> list[_Planned]:
        self._count(len(sample_ids))
        with self.store.read() as session:
            found = get_samples(session, list(sample_ids))
            missing = [s for s in sample_ids if s not in found]
            if missing:
                raise NotFound(f"no sample(s) {', '.join(map(repr, missing[:5]))}")
            rows = [(found[s], task_of(session, found[s])) for s in sample_ids]
        return [_Planned(None, sample, self._checked_job(task, sample.program, timeout))
                for sample, task in rows]

    def plan_pending(self, task_id: str, timeout: float | None) -> list[_Planned]:
        """A task's samples that never ran (e.g. generated without ``evaluate``)."""
        with self.store.read() as session:
            task = get_task(session, task_id)
            if task is None:
                raise NotFound(f"no task {task_id!r} (list them with GET /v1/tasks)")
            samples = unexecuted_samples(session, task_id, self.settings.max_programs)
        return [_Planned(None, s, self._checked_job(task, s.program, timeout)) for s in samples]

    # -- running and storing ---------------------------------------------------------------

    async def evaluate(self, what: EvaluationInput) -> list[Evaluated]:
        """The one entry point: exactly one way of naming programs must be used."""
        modes = [what.sample_ids is not None, what.programs is not None and what.task_id is None,
                 what.task_id is not None]
        if sum(modes) != 1:
            raise InvalidRequest("give exactly one of: 'sample_ids'; 'programs' with 'tests'; "
                                 "'task_id' (with 'programs', or alone for its unrun samples)")
        if what.tests is not None and (what.task_id is not None or what.sample_ids is not None):
            raise InvalidRequest("'tests' go with bare 'programs'; a task or sample brings its own")
        if what.sample_ids is not None:
            plan = partial(self.plan_samples, what.sample_ids, what.timeout)
        elif what.task_id is not None and what.programs is not None:
            plan = partial(self.plan_task_programs, what.task_id, what.programs, what.timeout)
        elif what.task_id is not None:
            plan = partial(self.plan_pending, what.task_id, what.timeout)
        else:
            plan = partial(self.plan_programs, what.programs or [], what.tests or [],
                           what.setup, what.instruction, what.timeout)
        planned = await anyio.to_thread.run_sync(plan)
        return await self.run(planned) if planned else []

    async def run(self, planned: list[_Planned]) -> list[Evaluated]:
        """Run every planned job in the sandbox, then store everything in one transaction."""
        outcomes = await self.sandbox.run_many([p.job for p in planned])
        for outcome in outcomes:
            self._on_outcome(outcome)
        return await anyio.to_thread.run_sync(self._store, planned, outcomes)

    def _store(self, planned: list[_Planned], outcomes: list[Outcome]) -> list[Evaluated]:
        results = []
        with self.store.write() as session:
            new = add_samples(session, [p.sample for p in planned if p.sample is not None])
            fresh = iter(new)
            for plan, outcome in zip(planned, outcomes, strict=True):
                sample = plan.existing or next(fresh)
                record = execution_record(outcome, self.sandbox.backend)
                row = add_execution(session, sample.id, record)
                results.append(Evaluated(sample.id, sample.task_id, row.id, outcome,
                                         record.feedback, record.reward, record.score))
        return results
