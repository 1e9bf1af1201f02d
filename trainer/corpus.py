"""Plain code for LETI's regulariser: continued pre-training batches interleaved with feedback ones.

The default corpus must exist offline on every machine, so it is the running interpreter's own
standard library source (``sysconfig``'s ``stdlib`` path). A directory of ``.py`` files or a JSONL
file (``text``/``code``/``content`` field) replaces it. Files are read lazily in a seeded order
and packed into fixed-size token blocks; the stream's position is a small state dict, so a resumed
run continues with the very block it would have seen.
"""

from __future__ import annotations

import json
import random
import sysconfig
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

_TEXT_FIELDS = ("text", "code", "content")
_SKIP_DIRS = {"test", "tests", "idlelib", "site-packages", "dist-packages", "__pycache__",
              "lib2to3", "turtledemo"}
_MAX_FILE_BYTES = 200_000  # generated tables (e.g. unicode data) are not code worth learning


class CorpusError(ValueError):
    """The code corpus is missing or empty; the message says what to pass instead."""


def stdlib_dir() -> Path:
    """The running interpreter's standard library sources."""
    return Path(sysconfig.get_paths()["stdlib"])


def list_sources(spec: str) -> tuple[list[Path], Path | None]:
    """(python files, jsonl file) for a corpus spec: 'stdlib', a directory, or a .jsonl file."""
    if spec == "stdlib":
        root = stdlib_dir()
    else:
        root = Path(spec)
        if root.is_file():
            if root.suffix not in (".jsonl", ".json"):
                raise CorpusError(f"code corpus {root} is a file but not JSON lines: pass a "
                                  "directory of .py files or a .jsonl file with a 'text' field")
            return [], root
        if not root.is_dir():
            raise CorpusError(f"code corpus {root} not found: pass 'stdlib', a directory of .py "
                              "files, or a .jsonl file")
    files = sorted(p for p in root.rglob("*.py")
                   if not (_SKIP_DIRS & set(p.relative_to(root).parts[:-1]))
                   and p.is_file() and 0 < p.stat().st_size <= _MAX_FILE_BYTES)
    if not files:
        raise CorpusError(f"no .py files under {root}: pass another code corpus "
                          "(--code-corpus DIR|FILE.jsonl) or --code-ratio 0 to train without one")
    return files, None


def _jsonl_texts(path: Path) -> list[str]:
    texts: list[str] = []
    with path.open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                raise CorpusError(f"{path} line {number}: invalid JSON") from None
            text = next((record[k] for k in _TEXT_FIELDS
                         if isinstance(record, dict) and isinstance(record.get(k), str)), None)
            if text is None:
                raise CorpusError(f"{path} line {number}: no string field among {_TEXT_FIELDS}")
            if text.strip():
                texts.append(text)
    if not texts:
        raise CorpusError(f"{path} holds no code: pass another corpus or --code-ratio 0")
    return texts


class CodeStream:
    """An endless, resumable stream of fixed-size token blocks of plain code.

    ``encode`` turns one document into token ids (the trainer passes the tokenizer, with EOS
    appended so documents stay apart). ``state()``/``load_state()`` capture the position.
    """

    def __init__(self, spec: str, encode: Callable[[str], list[int]], block_size: int, *,
                 seed: int = 0) -> None:
        self.files, jsonl = list_sources(spec)
        self.texts = _jsonl_texts(jsonl) if jsonl else None
        self.encode = encode
        self.block_size = block_size
        self.seed = seed
        self.epoch = 0
        self.cursor = 0  # next document in this epoch's order
        self.buffer: list[int] = []
        self._order = self._shuffled(0)

    def __len__(self) -> int:
        return len(self.texts) if self.texts is not None else len(self.files)

    def _shuffled(self, epoch: int) -> list[int]:
        order = list(range(len(self)))
        random.Random(self.seed * 1_000_003 + epoch).shuffle(order)
        return order

    def _document(self, index: int) -> str:
        if self.texts is not None:
            return self.texts[index]
        return self.files[index].read_text(encoding="utf-8", errors="replace")

    def next_block(self) -> list[int]:
        """The next ``block_size`` tokens of code (documents packed back to back)."""
        empty_pass = 0
        while len(self.buffer) < self.block_size:
            if self.cursor >= len(self._order):
                self.epoch, self.cursor = self.epoch + 1, 0
                self._order = self._shuffled(self.epoch)
                empty_pass += 1
                if empty_pass > 1:
                    raise CorpusError("the code corpus tokenises to nothing: pass another corpus")
            ids = self.encode(self._document(self._order[self.cursor]))
            self.cursor += 1
            self.buffer.extend(ids)
            if ids:
                empty_pass = 0
        block, self.buffer = self.buffer[:self.block_size], self.buffer[self.block_size:]
        return block

    def blocks(self, n: int) -> list[list[int]]:
        return [self.next_block() for _ in range(n)]

    def __iter__(self) -> Iterator[list[int]]:
        while True:
            yield self.next_block()

    def state(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "cursor": self.cursor, "buffer": list(self.buffer)}

    def load_state(self, state: dict[str, Any]) -> None:
        self.epoch, self.cursor = int(state["epoch"]), int(state["cursor"])
        self.buffer = list(state["buffer"])
        self._order = self._shuffled(self.epoch)
