"""The one prompt format, shared by sampling (service) and training (trainer) so they never drift.

A LETI prompt is, in this order: an optional reward marker, optional textual feedback, then the
task instruction; the model's program follows. Markers are plain words in the existing vocabulary
(no added tokens), so every adapter trained on them stays plain LoRA that vLLM can serve.

Example (MBPP, reward "bad" with feedback, a tokenizer with a chat template such as
SmolLM2-135M-Instruct)::

    Reward: bad
    Feedback:
    Test 1 failed: assert add(1, 2) == 3
    Expected 3, got -1.

    <|im_start|>system
    You are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>
    <|im_start|>user
    You are an expert Python programmer, and here is your task: Write a function to add two
    numbers. The function must be named `add` and pass these tests:

    assert add(1, 2) == 3<|im_end|>
    <|im_start|>assistant
                                                 <- the prompt ends here; the completion is
    ```python                                       "```python\\n{program}\\n```<|im_end|>\\n"
    def add(a, b): ...
    ```<|im_end|>

Without a chat template (base models, plain text) the instruction part is the same text followed
by a blank line and an opening fence, and the prompt ends right after ``` ```python\\n ```; the
completion is ``{program}\\n```\\n`` plus the tokenizer's EOS text. Sampling uses
``build_prompt(task, reward=Reward.GOOD)`` (or no reward for the untrained base model); training
uses ``build_sequence`` with the sample's own reward and feedback.

Tokenizing: a chat-template prompt already holds its special tokens, so encode it with
``add_special_tokens=False`` (see ``encode_kwargs``).
"""

from __future__ import annotations

import ast
import builtins
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal

TaskKind = Literal["mbpp", "humaneval", "user"]
_KINDS: tuple[str, ...] = ("mbpp", "humaneval", "user")

REWARD_PREFIX = "Reward: "
FEEDBACK_HEADER = "Feedback:"
OPEN_FENCE = "```python\n"
CLOSE_FENCE = "```"
# Sampling a program stops at a closing fence on its own line. A completion opens its block with
# "```python" (at its very start, or after prose), which this never matches; so the prose an
# instruct model writes after its code is not sampled. A fence closed by EOS ends on EOS.
PROGRAM_STOP: tuple[str, ...] = ("\n" + CLOSE_FENCE + "\n",)
_MBPP_LEAD = "You are an expert Python programmer, and here is your task: "
_HUMANEVAL_LEAD = "Complete the following Python function. Write the whole function, signature included:"


class Reward(StrEnum):
    """The binary LETI label; its value is the plain-text marker written into the prompt."""

    GOOD = "good"
    BAD = "bad"


@dataclass(frozen=True)
class TaskPrompt:
    """What a prompt is built from; mirrors the `kind/instruction/tests/entry_point` triple fields."""

    kind: TaskKind
    instruction: str
    tests: tuple[str, ...] = ()
    entry_point: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ValueError(f"unknown task kind {self.kind!r}; expected one of {_KINDS}")
        if not isinstance(self.instruction, str) or not self.instruction.strip():
            raise ValueError("a task needs a non-empty instruction")
        if isinstance(self.tests, (str, list)):  # a list is a common slip; keep the dataclass hashable
            object.__setattr__(self, "tests", (self.tests,) if isinstance(self.tests, str)
                               else tuple(self.tests))
        if self.kind == "mbpp" and not self.tests:
            raise ValueError("an MBPP task needs its tests: the function name comes from them")

    @property
    def function_name(self) -> str | None:
        """The function the program must define: the entry point, else the one the tests call."""
        return self.entry_point or entry_point_from_tests(self.tests)


def entry_point_from_tests(tests: tuple[str, ...] | list[str]) -> str | None:
    """The first non-builtin function a test calls (``assert remove_Occ("hello","l") == "heo"``)."""
    skip = set(dir(builtins)) | {"isclose"}
    for test in tests:
        try:
            tree = ast.parse(test)
        except SyntaxError:
            continue
        calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call)]
        calls.sort(key=lambda n: (n.lineno, n.col_offset))
        for call in calls:
            if isinstance(call.func, ast.Name) and call.func.id not in skip:
                return call.func.id
    return None


def has_chat_template(tokenizer: Any) -> bool:
    """Whether prompts for this tokenizer go through its chat template (instruct models)."""
    return tokenizer is not None and bool(getattr(tokenizer, "chat_template", None))


def encode_kwargs(tokenizer: Any) -> dict[str, bool]:
    """Keyword arguments for ``tokenizer(text, ...)``: chat text already holds its special tokens."""
    return {"add_special_tokens": not has_chat_template(tokenizer)}


def instruction_text(task: TaskPrompt) -> str:
    """The task in words, before any template: MBPP names the function and lists its tests."""
    if task.kind == "mbpp" or (task.kind == "user" and task.tests):
        name = task.function_name
        must = f"The function must be named `{name}` and pass" if name else "Your code should pass"
        lead = _MBPP_LEAD if task.kind == "mbpp" else ""
        tests = "\n".join(t.strip() for t in task.tests)
        return f"{lead}{task.instruction.strip()} {must} these tests:\n\n{tests}"
    if task.kind == "humaneval":
        return f"{_HUMANEVAL_LEAD}\n\n{OPEN_FENCE}{task.instruction.rstrip()}\n{CLOSE_FENCE}"
    return task.instruction.strip()


def conditioning_text(reward: Reward | None, feedback: str | None) -> str:
    """The LETI prefix: ``Reward: good\\n`` then ``Feedback:\\n<text>\\n``, then a blank line."""
    if reward is None:
        if feedback:
            raise ValueError("feedback needs a reward marker: LETI writes the marker first")
        return ""
    reward = Reward(reward)  # accepts "good"/"bad"; anything else raises ValueError
    text = f"{REWARD_PREFIX}{reward.value}\n"
    if feedback and feedback.strip():
        text += f"{FEEDBACK_HEADER}\n{feedback.strip()}\n"
    return text + "\n"


def build_prompt(task: TaskPrompt, *, reward: Reward | None = None, feedback: str | None = None,
                 tokenizer: Any = None) -> str:
    """The model input up to where the program starts (see the module docstring for the format)."""
    prefix = conditioning_text(reward, feedback)
    body = instruction_text(task)
    if has_chat_template(tokenizer):
        chat = tokenizer.apply_chat_template([{"role": "user", "content": body}],
                                             tokenize=False, add_generation_prompt=True)
        return prefix + chat
    return f"{prefix}{body}\n\n{OPEN_FENCE}"


def build_sequence(task: TaskPrompt, program: str, *, reward: Reward | None,
                   feedback: str | None = None, tokenizer: Any = None) -> tuple[str, str]:
    """(prompt, completion) for training; ``prompt`` is exactly ``build_prompt``'s text, so the
    trainer can mask it and the model learns only the completion."""
    if not program.strip():
        raise ValueError("cannot build a training sequence from an empty program")
    prompt = build_prompt(task, reward=reward, feedback=feedback, tokenizer=tokenizer)
    code = program.strip("\n")
    if has_chat_template(tokenizer):
        answer = f"{OPEN_FENCE}{code}\n{CLOSE_FENCE}"
        messages = [{"role": "user", "content": instruction_text(task)},
                    {"role": "assistant", "content": answer}]
        full = conditioning_text(reward, feedback) + tokenizer.apply_chat_template(
            messages, tokenize=False)
        if not full.startswith(prompt):  # a template that rewrites earlier turns: fall back
            return prompt, answer + (getattr(tokenizer, "eos_token", None) or "")
        return prompt, full[len(prompt):]
    eos = (getattr(tokenizer, "eos_token", None) or "") if tokenizer is not None else ""
    return prompt, f"{code}\n{CLOSE_FENCE}\n{eos}"
