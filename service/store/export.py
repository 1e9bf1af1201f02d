"""Exporting triples: JSON lines for the trainer, or a Hugging Face ``datasets`` folder.

The ``datasets`` folder is the same JSON lines plus a dataset card whose metadata declares the
split and every column's type, so ``datasets.load_dataset(folder)`` needs no guessing (a column
that is null in every row still loads as a string). Writing needs only the standard library.
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from service.store.db import Store
from service.store.triples import CONTRACT_FIELDS, TripleFilter, last_id, page

DATA_FILE = "triples.jsonl"

_FEATURES = {"tests": {"sequence": "string"}, "score": {"dtype": "float64"}}
_CARD = """---
configs:
- config_name: default
  data_files:
  - split: train
    path: {data_file}
dataset_info:
  features:
{features}
---

# leti-loop training triples

{count} triples exported by leti-loop (fields: docs/ARCHITECTURE.md, "Training triples").
Load with `datasets.load_dataset("{folder}")`; train with `leti train --data {folder}/{data_file}`.
"""


def json_line(record: dict[str, Any]) -> str:
    return json.dumps(record, ensure_ascii=False) + "\n"


def stream_lines(store: Store, where: TripleFilter, batch: int = 500) -> Iterator[str]:
    """Matching trainable triples as JSON lines, in short read batches up to the last id as of
    the call (or ``where.upto``): the stream ends even while writes go on.

    Every export of training data goes through here, and here only triples the split-hygiene
    rule allowed when they were stored are read, whatever else ``where`` asks for."""
    if where.trainable is False:
        raise ValueError("exports are training data: held-out triples are never exported")
    if where.upto is None:
        with store.read() as session:
            where = replace(where, upto=last_id(session))
    window, after = replace(where, trainable=True), where.after
    while True:  # one short read transaction per batch: writers are never held up
        with store.read() as session:
            items, after = page(session, replace(window, after=after), batch)
        for item in items:
            yield json_line(item.record)
        if after is None:
            return


def _write_atomically(path: Path, lines: Iterable[str]) -> int:
    """Write to a temporary name, fsync, rename: a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    count = 0
    with tmp.open("w", encoding="utf-8") as fh:
        for line in lines:
            fh.write(line)
            count += 1
        fh.flush()
        os.fsync(fh.fileno())
    tmp.replace(path)
    return count


def export_jsonl(store: Store, path: Path, where: TripleFilter | None = None) -> int:
    """Write matching triples to ``path`` (the trainer's input); returns how many."""
    return _write_atomically(Path(path), stream_lines(store, where or TripleFilter()))


def export_records(path: Path, records: Iterable[dict[str, Any]]) -> int:
    """Write already-read contract records (a selection of trainable triples) to ``path``."""
    return _write_atomically(Path(path), (json_line(r) for r in records))


def _feature_yaml() -> str:
    lines = []
    for name in CONTRACT_FIELDS:
        spec = _FEATURES.get(name, {"dtype": "string"})
        key, value = next(iter(spec.items()))
        lines.append(f"  - name: {name}\n    {key}: {value}")
    return "\n".join(lines)


def export_hf(store: Store, folder: Path, where: TripleFilter | None = None) -> int:
    """Write a folder ``datasets.load_dataset`` reads: the JSON lines and a typed dataset card."""
    folder = Path(folder)
    count = export_jsonl(store, folder / DATA_FILE, where)
    card = _CARD.format(data_file=DATA_FILE, features=_feature_yaml(), count=count,
                        folder=folder)
    (folder / "README.md").write_text(card, encoding="utf-8")
    return count
