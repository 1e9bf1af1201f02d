"""Triples -> exact training text and labels (LETI, binary, SFT, LaFFi), and the file reader."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tiny_models import triple, write_triples

from trainer.batches import IGNORE_INDEX, encode_example
from trainer.data import (
    DatasetError,
    Triple,
    feedback_examples,
    leti_example,
    mix,
    read_triples,
)
from trainer.prompts import Reward

FEEDBACK = "Test 1 failed: assert add3(1) == 4\nExpected 4, got -2."
USER = ("<|im_start|>user\nYou are an expert Python programmer, and here is your task: Write a "
        "function to add 3 to a number. The function must be named `add3` and pass these "
        "tests:\n\nassert add3(1) == 4<|im_end|>\n<|im_start|>assistant\n")


@pytest.fixture(scope="module")
def chat_tok(tiny_model: Path):
    from trainer.base_model import load_tokenizer

    return load_tokenizer(str(tiny_model))


@pytest.fixture(scope="module")
def plain_tok(tiny_plain_model: Path):
    from trainer.base_model import load_tokenizer

    return load_tokenizer(str(tiny_plain_model))


def bad() -> Triple:
    return Triple.from_dict(triple(3, "def add3(x):\n    return x - 3", "bad", FEEDBACK))


def good() -> Triple:
    return Triple.from_dict(triple(3, "def add3(x):\n    return x + 3", "good",
                                   "All 1 tests passed."))


def test_leti_bad_sample_is_marker_feedback_instruction_program(chat_tok) -> None:
    ex = leti_example(bad(), tokenizer=chat_tok)
    assert ex.prompt == f"Reward: bad\nFeedback:\n{FEEDBACK}\n\n{USER}"
    assert ex.completion == "```python\ndef add3(x):\n    return x - 3\n```<|im_end|>\n"


def test_leti_good_sample_has_marker_but_no_feedback(chat_tok) -> None:
    ex = leti_example(good(), tokenizer=chat_tok)
    assert ex.prompt == f"Reward: good\n\n{USER}"


def test_binary_ablation_drops_the_feedback_text(chat_tok) -> None:
    ex = leti_example(bad(), binary=True, tokenizer=chat_tok)
    assert ex.prompt == f"Reward: bad\n\n{USER}" and ex.kind == "binary"


def test_training_prompt_is_the_sampling_prompt(chat_tok) -> None:
    from trainer.prompts import build_prompt

    ex = leti_example(good(), tokenizer=chat_tok)
    assert ex.prompt == build_prompt(good().task, reward=Reward.GOOD, tokenizer=chat_tok)


def test_plain_tokenizer_sequence_ends_with_fence_and_eos(plain_tok) -> None:
    ex = leti_example(bad(), tokenizer=plain_tok)
    assert ex.prompt.startswith("Reward: bad\nFeedback:\n") and ex.prompt.endswith("```python\n")
    assert ex.completion == "def add3(x):\n    return x - 3\n```\n<|endoftext|>"


def test_sft_uses_one_reference_per_task_without_marker(chat_tok, tmp_path: Path) -> None:
    triples = read_triples(write_triples(tmp_path / "t.jsonl", n_tasks=3))
    examples = feedback_examples(triples, "sft", tokenizer=chat_tok)
    assert len(examples) == 3 and all(e.kind == "sft" for e in examples)
    assert not any("Reward:" in e.prompt for e in examples)
    assert "return x + 1" in examples[0].completion


def test_sft_without_references_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps(triple(1, "def add1(x): return x", "bad", reference=None)) + "\n")
    with pytest.raises(DatasetError, match="reference"):
        feedback_examples(read_triples(path), "sft")


@pytest.mark.parametrize("mask", [False, True])
def test_labels_cover_whole_sequence_or_only_program(chat_tok, mask: bool) -> None:
    ex = leti_example(bad(), tokenizer=chat_tok)
    enc = encode_example(ex, chat_tok, mask_prompt=mask, max_length=4096)
    assert enc is not None
    assert chat_tok.decode(enc.input_ids) == ex.prompt + ex.completion
    n_prompt = len(chat_tok(ex.prompt, add_special_tokens=False)["input_ids"])
    if mask:
        assert enc.labels[:n_prompt] == (IGNORE_INDEX,) * n_prompt
        assert chat_tok.decode(enc.labels[n_prompt:]) == ex.completion
    else:
        assert enc.labels == enc.input_ids
    assert enc.input_ids[-2] == chat_tok.convert_tokens_to_ids("<|im_end|>")  # learns to stop


def test_too_long_examples_are_skipped(chat_tok) -> None:
    assert encode_example(leti_example(bad(), tokenizer=chat_tok), chat_tok, mask_prompt=False,
                          max_length=10) is None


def test_read_triples_names_every_broken_line(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps(triple(1, "x = 1", "good")) + "\n{not json\n"
                    + json.dumps(triple(2, "x = 1", "maybe")) + "\n")
    with pytest.raises(DatasetError) as info:
        read_triples(path)
    assert "line 2: invalid JSON" in str(info.value)
    assert "line 3: 'reward' is 'maybe'" in str(info.value)


def test_empty_or_missing_file_is_an_error_not_an_empty_adapter(tmp_path: Path) -> None:
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(DatasetError, match="no triples"):
        read_triples(tmp_path / "empty.jsonl")
    with pytest.raises(DatasetError, match="not found"):
        read_triples(tmp_path / "missing.jsonl")


def test_unlabelled_external_record_gets_label_from_score(tmp_path: Path) -> None:
    row = triple(1, "x = 1", "good", source="external", status=None, score=0.3)
    del row["reward"]
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps(row) + "\n")
    assert read_triples(path)[0].reward is Reward.BAD
    assert read_triples(path, good_threshold=0.25)[0].reward is Reward.GOOD


def test_laffi_mix_ratio_sets_the_share_of_feedback_prediction(chat_tok, tmp_path: Path) -> None:
    triples = read_triples(write_triples(tmp_path / "t.jsonl", n_tasks=10))  # 20 triples
    for ratio, laffi, leti in ((0.0, 0, 20), (0.2, 5, 20), (0.5, 20, 20), (1.0, 20, 0)):
        examples = feedback_examples(triples, "leti", laffi_ratio=ratio, tokenizer=chat_tok)
        kinds = [e.kind for e in examples]
        assert (kinds.count("laffi"), kinds.count("leti")) == (laffi, leti), ratio


def test_mix_keeps_the_larger_share_whole() -> None:
    from trainer.data import Example

    a = [Example("p", str(i), "leti") for i in range(9)]
    b = [Example("p", str(i), "laffi") for i in range(9)]
    assert len(mix(a, b, 0.25)) == 12 and len(mix(a, b, 0.75)) == 12


def _truncated_file(tmp_path: Path) -> Path:
    """A normal failure, a pass and a failure each cut at the token limit, and a short pass."""
    rows = [triple(1, "def add1(x):\n    return x - 1", "bad", FEEDBACK, finish_reason="stop"),
            triple(2, "def add2(x):\n    return x + 2\n# 2 2 2 2", "good", "All 1 tests passed.",
                   finish_reason="length"),
            triple(3, "def add3(x:\n    x x x x", "bad", "SyntaxError: '(' was never closed",
                   finish_reason="length"),
            triple(4, "def add4(x):\n    return x + 4", "good", "All 1 tests passed.",
                   finish_reason=None)]
    path = tmp_path / "t.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_truncated_failures_are_dropped_by_default_and_reported(tmp_path: Path,
                                                                monkeypatch) -> None:
    from trainer.data import read_triples_report

    monkeypatch.delenv("LETI_TRAIN_TRUNCATED", raising=False)
    path = _truncated_file(tmp_path)
    kept = read_triples(path)
    assert [t.task_id for t in kept] == ["mbpp/1", "mbpp/2", "mbpp/4"]  # a cut pass stays
    assert kept[1].finish_reason == "length" and kept[2].finish_reason is None
    _, report = read_triples_report(path)
    assert (report.read, report.kept, report.policy, report.dropped, report.marked) == \
        (4, 3, "drop", {"truncated failure": 1}, 0)


def test_truncated_failures_marked_or_kept_by_the_setting(tmp_path: Path, monkeypatch) -> None:
    from trainer.data import TRUNCATED_NOTE, read_triples_report

    path = _truncated_file(tmp_path)
    marked, report = read_triples_report(path, truncated="mark")
    assert len(marked) == 4 and report.marked == 1 and report.dropped == {}
    assert marked[2].feedback == f"SyntaxError: '(' was never closed\n{TRUNCATED_NOTE}"
    assert marked[0].feedback == FEEDBACK  # only the cut failure says so
    assert TRUNCATED_NOTE in leti_example(marked[2]).prompt
    assert read_triples(path, truncated="keep")[2].feedback == "SyntaxError: '(' was never closed"
    monkeypatch.setenv("LETI_TRAIN_TRUNCATED", "keep")  # how the service tells the trainer
    assert len(read_triples(path)) == 4
    monkeypatch.setenv("LETI_TRAIN_TRUNCATED", "sometimes")
    with pytest.raises(DatasetError, match="LETI_TRAIN_TRUNCATED='sometimes': choose one of"):
        read_triples(path)


def test_a_file_of_only_truncated_failures_says_why_nothing_is_left(tmp_path: Path,
                                                                   monkeypatch) -> None:
    monkeypatch.delenv("LETI_TRAIN_TRUNCATED", raising=False)
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps(triple(1, "def f(:", "bad", "SyntaxError",
                                      finish_reason="length")) + "\n")
    with pytest.raises(DatasetError, match="every one a failed program cut at the token limit"):
        read_triples(path)
    with pytest.raises(DatasetError, match="line 1: 'finish_reason' must be a string"):
        path.write_text(json.dumps(triple(1, "x = 1", "bad", finish_reason=3)) + "\n")
        read_triples(path)
