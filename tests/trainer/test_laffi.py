"""LaFFi: the feedback-prediction text, the held-out split, the status a prediction implies, and
accuracy."""

from __future__ import annotations

from pathlib import Path

import pytest
from tiny_models import triple, write_triples

from trainer.data import Triple, read_triples
from trainer.laffi import (
    PASS_TEXT,
    QUESTION,
    laffi_example,
    score_predictions,
    split_by_task,
    status_of,
    true_status,
)

PROGRAM = "def add3(x):\n    return x - 3"
FEEDBACK = "Test 1 failed: assert add3(1) == 4\nExpected 4, got -2."


@pytest.fixture(scope="module")
def chat_tok(tiny_model: Path):
    from trainer.base_model import load_tokenizer

    return load_tokenizer(str(tiny_model))


def test_laffi_sequence_asks_for_the_feedback_after_the_program(chat_tok) -> None:
    ex = laffi_example(Triple.from_dict(triple(3, PROGRAM, "bad", FEEDBACK)), chat_tok)
    assert ex.prompt.endswith(f"<|im_start|>assistant\n```python\n{PROGRAM}\n```<|im_end|>\n"
                              f"<|im_start|>user\n{QUESTION}<|im_end|>\n<|im_start|>assistant\n")
    assert "Reward:" not in ex.prompt  # the model predicts the outcome, it is not told it
    assert ex.completion == f"{FEEDBACK}<|im_end|>\n" and ex.kind == "laffi"


def test_a_passing_program_is_predicted_to_pass(chat_tok) -> None:
    ex = laffi_example(Triple.from_dict(triple(3, PROGRAM, "good", "All 1 tests passed.")),
                       chat_tok)
    assert ex.completion == f"{PASS_TEXT}<|im_end|>\n"


def test_plain_text_laffi_prompt(tiny_plain_model: Path) -> None:
    from trainer.base_model import load_tokenizer

    tok = load_tokenizer(str(tiny_plain_model))
    ex = laffi_example(Triple.from_dict(triple(3, PROGRAM, "bad", FEEDBACK)), tok)
    assert ex.prompt.endswith(f"```python\n{PROGRAM}\n```\n\n{QUESTION}\nFeedback:\n")
    assert ex.completion == f"{FEEDBACK}\n<|endoftext|>"


@pytest.mark.parametrize("text,status", [
    (PASS_TEXT, "passed"), ("All 3 tests passed.", "passed"), ("The test passed.", "passed"),
    (FEEDBACK, "failed"),
    (("Traceback (most recent call last):\n  File \"<program>\", line 2\nNameError: name 'y' "
      "is not defined"), "error"),
    ("  File \"<program>\", line 1\n    def f(\n         ^\nSyntaxError: '(' was never closed",
     "syntax_error"),
    ("Timeout: the program did not finish within 5 s (test 2 was running).", "timeout"),
    ("Traceback (most recent call last):\nMemoryError", "memory"),
    ("SIGSEGV: the process crashed with signal SIGSEGV.", "crashed"),
    ("I am not sure.", "unknown"),
])
def test_status_of_reads_every_feedback_format(text: str, status: str) -> None:
    assert status_of(text) == status


def test_accuracy_compares_implied_statuses() -> None:
    triples = [Triple.from_dict(triple(1, "x", "good", "All 1 tests passed.")),
               Triple.from_dict(triple(2, "x", "bad", FEEDBACK)),
               Triple.from_dict(triple(3, "x", "bad", "NameError: name 'y' is not defined",
                                       status="error"))]
    acc = score_predictions(triples, [PASS_TEXT, "Test 1 failed: assert f(1) == 2", PASS_TEXT])
    assert acc.n == 3 and acc.status_accuracy == pytest.approx(2 / 3)
    assert acc.pass_fail_accuracy == pytest.approx(2 / 3)
    assert acc.confusion == {"passed->passed": 1, "failed->failed": 1, "error->passed": 1}


def test_external_record_without_status_takes_it_from_its_text() -> None:
    row = triple(1, "x", "bad", "Traceback ...\nKeyError: 'a'", status=None, source="external")
    assert true_status(Triple.from_dict(row)) == "error"
    row = triple(1, "x", "bad", "too slow for my taste", status=None, source="external")
    assert true_status(Triple.from_dict(row)) == "failed"


def test_heldout_split_keeps_tasks_whole(tmp_path: Path) -> None:
    triples = read_triples(write_triples(tmp_path / "t.jsonl", n_tasks=10))
    train, held = split_by_task(triples, 0.2, seed=1)
    assert len(held) == 4 and not {t.task_id for t in train} & {t.task_id for t in held}
