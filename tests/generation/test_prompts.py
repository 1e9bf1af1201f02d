"""The shared prompt format (trainer/prompts.py): LETI order, chat vs plain text, and that
training sequences start with exactly the sampling prompt."""

from __future__ import annotations

from typing import Any

import pytest

from trainer.prompts import (
    Reward,
    TaskPrompt,
    build_prompt,
    build_sequence,
    encode_kwargs,
    entry_point_from_tests,
)

MBPP = TaskPrompt("mbpp", "Write a function to add two numbers.", ("assert add(1, 2) == 3",))
HUMANEVAL = TaskPrompt("humaneval", 'def inc(x: int) -> int:\n    """Return x + 1."""\n',
                       entry_point="inc")
FEEDBACK = "Test 1 failed: assert add(1, 2) == 3\nExpected 3, got -1."


def test_plain_mbpp_prompt_names_the_function_and_ends_where_code_starts() -> None:
    assert build_prompt(MBPP) == (
        "You are an expert Python programmer, and here is your task: Write a function to add two "
        "numbers. The function must be named `add` and pass these tests:\n\n"
        "assert add(1, 2) == 3\n\n```python\n")


def test_leti_order_is_reward_then_feedback_then_instruction() -> None:
    prompt = build_prompt(MBPP, reward=Reward.BAD, feedback=FEEDBACK)
    assert prompt.startswith(f"Reward: bad\nFeedback:\n{FEEDBACK}\n\nYou are an expert")
    assert build_prompt(MBPP, reward="good").startswith("Reward: good\n\nYou are an expert")


def test_feedback_without_a_reward_and_unknown_rewards_are_refused() -> None:
    with pytest.raises(ValueError, match="reward marker"):
        build_prompt(MBPP, feedback="x")
    with pytest.raises(ValueError):
        build_prompt(MBPP, reward="great")  # type: ignore[arg-type]


def test_instruct_tokenizer_gets_its_chat_template(smol_tokenizer: Any) -> None:
    prompt = build_prompt(MBPP, reward=Reward.GOOD, tokenizer=smol_tokenizer)
    assert prompt.startswith("Reward: good\n\n<|im_start|>system\n")
    assert "<|im_start|>user\nYou are an expert Python programmer" in prompt
    assert prompt.endswith("assert add(1, 2) == 3<|im_end|>\n<|im_start|>assistant\n")
    assert encode_kwargs(smol_tokenizer) == {"add_special_tokens": False}


def test_markers_are_existing_vocabulary(smol_tokenizer: Any) -> None:
    """No added tokens: each marker is ordinary text the tokenizer already splits."""
    for reward in Reward:
        ids = smol_tokenizer(f"Reward: {reward.value}\n", add_special_tokens=False)["input_ids"]
        assert all(i < smol_tokenizer.vocab_size for i in ids)
        assert smol_tokenizer.decode(ids) == f"Reward: {reward.value}\n"


@pytest.mark.parametrize("chat", [False, True])
def test_sequence_prompt_is_exactly_the_sampling_prompt(chat: bool, smol_tokenizer: Any) -> None:
    tokenizer = smol_tokenizer if chat else None
    program = "def add(a, b):\n    return a + b\n"
    prompt, completion = build_sequence(MBPP, program, reward=Reward.BAD, feedback=FEEDBACK,
                                        tokenizer=tokenizer)
    assert prompt == build_prompt(MBPP, reward=Reward.BAD, feedback=FEEDBACK, tokenizer=tokenizer)
    if chat:
        assert completion == "```python\ndef add(a, b):\n    return a + b\n```<|im_end|>\n"
    else:
        assert completion == "def add(a, b):\n    return a + b\n```\n"


def test_humaneval_prompt_shows_the_signature_and_docstring() -> None:
    prompt = build_prompt(HUMANEVAL)
    assert '```python\ndef inc(x: int) -> int:\n    """Return x + 1."""\n```' in prompt
    assert prompt.endswith("\n\n```python\n")
    assert HUMANEVAL.function_name == "inc"


def test_entry_point_comes_from_the_tests_skipping_builtins() -> None:
    assert entry_point_from_tests(['assert set(similar_elements((3, 4), (5, 4))) == set((4,))'
                                   ]) == "similar_elements"
    assert entry_point_from_tests(["assert math.isclose(area(2), 4)"]) == "area"
    assert entry_point_from_tests(["x = 1"]) is None


@pytest.mark.parametrize("bad", [
    {"kind": "mbpp", "instruction": "Add.", "tests": ()},
    {"kind": "other", "instruction": "Add."},
    {"kind": "user", "instruction": "  "},
])
def test_malformed_tasks_are_refused(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        TaskPrompt(**bad)


def test_empty_program_cannot_become_a_training_sequence() -> None:
    with pytest.raises(ValueError, match="empty program"):
        build_sequence(MBPP, "  \n", reward=Reward.GOOD)


def test_the_program_stop_cuts_at_the_closing_fence_only() -> None:
    """Sampling stops at the closing fence: never at an opening one (at the start of the
    completion or after prose), and what is left before the cut still extracts the program."""
    from service.generation.extract import extract_program
    from trainer.prompts import PROGRAM_STOP

    (stop,) = PROGRAM_STOP
    answer = "Here it is:\n```python\ndef f(x):\n    return x\n```\nThis returns x."
    for opening in ("```python\ndef f(x):", "Here it is:\n```python\n"):
        assert stop not in opening
    cut = answer[:answer.index(stop)]  # what a stopped sample's text is
    assert cut.endswith("return x") and "This returns" not in cut
    assert extract_program(cut, "f") == "def f(x):\n    return x\n"
