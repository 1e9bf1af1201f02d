"""The three rules every sampling and scoring path shares (``service.core.programs``): a task's
prompt, a completion's program, and the sandbox job that judges it. The strings are pinned
literally, so a change to any rule shows here before it shows as a moved pass@1."""

from __future__ import annotations

from typing import Any

import pytest

from sandbox import Job
from sandbox.tasks import Task, load_humaneval
from service.benchmarks.scoring import BenchTask
from service.core.programs import (
    SubmittedTests,
    completion_program,
    executed_program,
    function_name,
    marker_prefix,
    prompt_tests,
    reward_marker,
    task_job,
    task_prompt,
)
from service.speed.generation import base_prompts
from service.store.models import TaskRow
from trainer.prompts import Reward

ADD = "def add(a, b):\n    return a + b\n"
MBPP = TaskRow(id="mbpp/2", kind="mbpp", instruction="Write a function to add two numbers.",
               tests=["assert add(1, 2) == 3", "assert add(0, 0) == 0"], setup="OFFSET = 0",
               entry_point=None)
INC_PROMPT = 'def inc(x: int) -> int:\n    """Return x + 1."""\n'
INC_CHECK = "def check(candidate):\n    assert candidate(1) == 2\n"
HUMANEVAL = TaskRow(id="humaneval/HumanEval/9", kind="humaneval", instruction=INC_PROMPT,
                    tests=[INC_CHECK, "check(inc)"], setup="", entry_point="inc")

MBPP_TEXT = ("You are an expert Python programmer, and here is your task: Write a function to add "
             "two numbers. The function must be named `add` and pass these tests:\n\n"
             "assert add(1, 2) == 3\nassert add(0, 0) == 0")
HUMANEVAL_TEXT = ("Complete the following Python function. Write the whole function, signature "
                  f"included:\n\n```python\n{INC_PROMPT.rstrip()}\n```")
OPEN = "\n\n```python\n"


class ChatTokenizer:
    """The part of a chat tokenizer that prompts use (SmolLM2's turn format)."""

    chat_template = "chatml"
    eos_token = "<|im_end|>"

    def apply_chat_template(self, messages: list[dict[str, str]], *, tokenize: bool,
                            add_generation_prompt: bool) -> str:
        assert not tokenize and add_generation_prompt
        turns = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
        return turns + "<|im_start|>assistant\n"


# -- task -> prompt ----------------------------------------------------------------------------

def test_an_mbpp_prompt_names_the_function_and_shows_its_tests() -> None:
    assert task_prompt(MBPP, None, conditioned=False) == MBPP_TEXT + OPEN
    assert task_prompt(MBPP, None, conditioned=True) == "Reward: good\n\n" + MBPP_TEXT + OPEN
    assert task_prompt(MBPP, None, conditioned=True, reward="bad") == \
        "Reward: bad\n\n" + MBPP_TEXT + OPEN
    assert task_prompt(MBPP, None, conditioned=False, reward="bad") == MBPP_TEXT + OPEN


def test_a_humaneval_prompt_shows_the_signature_and_hides_check() -> None:
    assert task_prompt(HUMANEVAL, None, conditioned=False) == HUMANEVAL_TEXT + OPEN
    assert task_prompt(HUMANEVAL, None, conditioned=True) == \
        "Reward: good\n\n" + HUMANEVAL_TEXT + OPEN
    assert prompt_tests(HUMANEVAL) == []
    assert prompt_tests(MBPP) == MBPP.tests
    assert "check" not in task_prompt(HUMANEVAL, None, conditioned=True)


def test_a_chat_prompt_puts_the_marker_before_the_template() -> None:
    prompt = task_prompt(MBPP, ChatTokenizer(), conditioned=True)
    assert prompt == ("Reward: good\n\n<|im_start|>user\n" + MBPP_TEXT
                      + "<|im_end|>\n<|im_start|>assistant\n")
    assert task_prompt(MBPP, ChatTokenizer(), conditioned=False) == \
        prompt.removeprefix("Reward: good\n\n")


def test_the_marker_is_good_only_when_conditioned() -> None:
    assert reward_marker(True) is Reward.GOOD
    assert reward_marker(True, "bad") is Reward.BAD
    assert reward_marker(False) is None
    assert marker_prefix(True) == "Reward: good\n\n"
    assert marker_prefix(False) == ""
    assert task_prompt(MBPP, None, conditioned=True).startswith(marker_prefix(True))
    with pytest.raises(ValueError):
        reward_marker(True, "great")


def test_a_stored_task_a_bench_task_and_a_sandbox_task_get_one_prompt() -> None:
    """The API, benchmark jobs and the speed harness read the same problem in three shapes."""
    for row in (MBPP, HUMANEVAL):
        bench = BenchTask(id=row.id, kind=row.kind, instruction=row.instruction,
                          tests=tuple(row.tests), setup=row.setup, entry_point=row.entry_point)
        sandbox_task = Task(task_id=row.id, kind=row.kind,  # type: ignore[arg-type]
                            instruction=row.instruction, tests=tuple(row.tests),
                            setup=row.setup, entry_point=row.entry_point)
        expected = task_prompt(row, None, conditioned=False)
        assert task_prompt(bench, None, conditioned=False) == expected
        assert base_prompts(None, [sandbox_task]) == [expected]


# -- completion -> program ---------------------------------------------------------------------

def test_the_function_name_is_the_entry_point_else_the_one_the_tests_call() -> None:
    assert function_name(HUMANEVAL) == "inc"
    assert function_name(MBPP) == "add"
    bare = TaskRow(id="user/x", kind="user", instruction="Print hi.", tests=["x = 1"], setup="",
                   entry_point=None)
    assert function_name(bare) is None


def test_a_fenced_completion_becomes_the_block_that_defines_the_function() -> None:
    helper = "def helper(x):\n    return x\n"
    chat = (f"Here is a helper:\n```python\n{helper}```\nand the answer:\n```python\n{ADD}```\n"
            "It adds the numbers.")
    assert completion_program(MBPP, chat) == ADD  # the tests name `add`: its block wins


def test_an_unfenced_completion_ends_at_the_closing_fence() -> None:
    """The plain prompt opens the fence, so the completion is code, then ``` and chatter."""
    assert completion_program(MBPP, ADD + "```\nprint(add(1, 2))\n") == ADD
    assert completion_program(MBPP, ADD + "\nprint(add(1, 2))\n") == ADD  # example usage dropped


def test_a_humaneval_completion_runs_after_its_prompt() -> None:
    body = "def inc(x: int) -> int:\n    return x + 1\n"
    assert completion_program(HUMANEVAL, f"```python\n{body}```\nDone.") == INC_PROMPT + body
    assert completion_program(HUMANEVAL, body + "```\n") == INC_PROMPT + body
    whole = INC_PROMPT + "    return x + 1\n"
    assert executed_program(HUMANEVAL, whole) == whole  # already starts with the prompt
    assert executed_program(HUMANEVAL, "    return x + 1\n") == whole
    assert executed_program(HUMANEVAL, executed_program(HUMANEVAL, body)) == INC_PROMPT + body
    assert executed_program(MBPP, "    return 1\n") == "    return 1\n"  # MBPP: as written
    assert completion_program(HUMANEVAL, "   \n") == INC_PROMPT  # no code: the bare prompt


def test_the_service_and_the_sandbox_agree_on_humaneval_programs() -> None:
    """``sandbox.tasks.Task.program_for`` is the one copy left (sandbox/ cannot import the
    service): the two must agree on real HumanEval tasks."""
    for task in load_humaneval()[:5]:
        canonical = (task.reference or "")[len(task.instruction):]
        for text in (canonical, task.reference or "", "    return None\n", ""):
            assert executed_program(task, text) == task.program_for(text)


# -- task + program -> sandbox job -------------------------------------------------------------

def test_an_mbpp_job_runs_every_test_after_the_setup() -> None:
    job = task_job(MBPP, ADD, timeout=3.0, memory_mb=512)
    assert job == Job(program=ADD, tests=("assert add(1, 2) == 3", "assert add(0, 0) == 0"),
                      setup="OFFSET = 0", timeout=3.0, memory_mb=512, id=None)
    assert task_job(MBPP, ADD, timeout=3.0, memory_mb=512, id="mbpp/2#0").id == "mbpp/2#0"


def test_a_humaneval_job_runs_the_hidden_check() -> None:
    program = completion_program(HUMANEVAL, "    return x + 1\n")
    job = task_job(HUMANEVAL, program, timeout=5.0, memory_mb=1024)
    assert (job.program, job.tests, job.setup) == (INC_PROMPT + "    return x + 1\n",
                                                    (INC_CHECK, "check(inc)"), "")
    assert job.tests != tuple(prompt_tests(HUMANEVAL))  # judged on more than the prompt shows


def test_jobs_match_the_sandbox_tasks_own() -> None:
    task: Any = load_humaneval()[0]
    completion = (task.reference or "")[len(task.instruction):]
    ours = task_job(task, executed_program(task, completion), timeout=5.0, memory_mb=1024,
                    id=task.task_id)
    assert ours == task.job_for(completion)


def test_submitted_tests_make_the_same_job_as_a_task() -> None:
    submitted = SubmittedTests(tuple(MBPP.tests), MBPP.setup)
    assert task_job(submitted, ADD, timeout=2.0, memory_mb=256) == \
        task_job(MBPP, ADD, timeout=2.0, memory_mb=256)


class _Recorder:
    """A generator that records the prompts it is asked for and answers one fixed program."""

    alias = "policy"

    def __init__(self, serving: str | None) -> None:
        self.serving = serving
        self.prompts: list[str] = []

    async def generate(self, prompts: list[str], params: Any, adapter: str | None = None) -> Any:
        from service.generation.types import Completion

        self.prompts += prompts
        return [[Completion("```python\n" + ADD + "```", 1, 1, "stop", self.serving)
                 for _ in range(params.n)] for _ in prompts]


@pytest.mark.parametrize(("serving", "adapter", "conditioned"), [
    (None, None, False), (None, "policy", False), (None, "base", False),  # the base model
    ("policy-v1", None, True), ("policy-v1", "policy", True), ("policy-v1", "base", False),
    (None, "policy-v0", True),  # a concrete adapter, even while the base model serves
])
def test_benchmarks_condition_exactly_as_generate_does(
        serving: str | None, adapter: str | None, conditioned: bool) -> None:
    """One rule: the prompt carries the "good" marker when the adapter the request resolves to
    is not the base model, whichever path samples (a benchmark naming the alias while the base
    model serves used to add it)."""
    import asyncio

    from service.benchmarks.jobs import BenchmarkSpec, sample_programs
    from service.core.generation import Generation

    tokenizer = ChatTokenizer()
    generator = _Recorder(serving)
    generation = Generation(generator, tokenizer, None, None, None, None)  # type: ignore[arg-type]
    assert (generation.resolved_adapter(adapter) is not None) is conditioned
    bench = BenchTask(MBPP.id, MBPP.kind, MBPP.instruction, tuple(MBPP.tests), MBPP.setup)
    asyncio.run(sample_programs(BenchmarkSpec("mbpp", adapter=adapter), generation,
                                [(MBPP, bench)]))
    assert generator.prompts == [task_prompt(MBPP, tokenizer, conditioned=conditioned)]
