"""Triple use cases: a page for browsing, a stream for exporting (what the trainer reads)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

from service.store.db import Store
from service.store.export import stream_lines
from service.store.triples import TripleFilter, last_id, page


def triple_page(store: Store, where: TripleFilter, limit: int) -> tuple[list[dict[str, Any]],
                                                                         int | None]:
    """Up to ``limit`` triples (each with its ``id``) and the next cursor (None at the end)."""
    with store.read() as session:
        items, next_cursor = page(session, where, limit)
    return [{"id": item.id, **item.record, "trainable": item.trainable} for item in items], \
        next_cursor


def export_window(store: Store, where: TripleFilter) -> TripleFilter:
    """Fix the export's upper bound now, so a stream ends even while writes go on."""
    if where.upto is not None:
        return where
    with store.read() as session:
        return replace(where, upto=last_id(session))


def export_lines(store: Store, window: TripleFilter) -> Iterator[str]:
    """The window's triples as JSON lines, read in short batches."""
    return stream_lines(store, window)
