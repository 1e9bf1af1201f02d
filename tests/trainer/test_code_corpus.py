"""The plain-code corpus: the interpreter's stdlib by default, a directory or JSONL instead."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from trainer.corpus import CodeStream, CorpusError, list_sources, stdlib_dir


def chars(text: str) -> list[int]:
    return [ord(c) for c in text]


def text(blocks: list[list[int]]) -> str:
    return "".join(chr(c) for block in blocks for c in block)


def test_default_corpus_is_this_interpreters_stdlib() -> None:
    files, jsonl = list_sources("stdlib")
    assert jsonl is None and len(files) > 100
    assert all(f.is_relative_to(stdlib_dir()) for f in files)
    assert stdlib_dir() / "json" / "decoder.py" in files
    assert not any("site-packages" in f.parts or "test" in f.parts for f in files)


def test_blocks_have_exact_size_and_are_real_code() -> None:
    stream = CodeStream("stdlib", chars, 64, seed=0)
    blocks = stream.blocks(20)
    assert all(len(b) == 64 for b in blocks)
    assert "def " in text(blocks) or "import " in text(blocks)


def test_directory_corpus_packs_documents_in_seeded_order(tmp_path: Path) -> None:
    for i in range(4):
        (tmp_path / f"m{i}.py").write_text(f"x{i} = {i}\n")
    a = text(CodeStream(str(tmp_path), chars, 7, seed=1).blocks(4))  # one pass: 4 x 7 chars
    assert sorted(a.splitlines()) == [f"x{i} = {i}" for i in range(4)]
    assert a == text(CodeStream(str(tmp_path), chars, 7, seed=1).blocks(4))
    assert a != text(CodeStream(str(tmp_path), chars, 7, seed=5).blocks(4))


def test_jsonl_corpus_reads_text_or_code_fields(tmp_path: Path) -> None:
    path = tmp_path / "code.jsonl"
    path.write_text(json.dumps({"text": "a = 1\n"}) + "\n" + json.dumps({"code": "b = 2\n"}) + "\n")
    out = text(CodeStream(str(path), chars, 6, seed=0).blocks(2))
    assert sorted(out.splitlines()) == ["a = 1", "b = 2"]


def test_state_resumes_the_same_blocks_across_epochs(tmp_path: Path) -> None:
    for i in range(3):
        (tmp_path / f"m{i}.py").write_text(f"value_{i} = {i * 111}\n")
    a = CodeStream(str(tmp_path), chars, 7, seed=2)
    a.blocks(9)  # several passes over the three files
    b = CodeStream(str(tmp_path), chars, 7, seed=2)
    b.load_state(a.state())
    assert a.blocks(10) == b.blocks(10)


def test_missing_or_empty_corpus_says_what_to_pass(tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match="--code-ratio 0"):
        CodeStream(str(tmp_path), chars, 8)
    with pytest.raises(CorpusError, match="not found"):
        CodeStream(str(tmp_path / "nope"), chars, 8)
