"""What a training run trains on: the window of triples no finished run has trained on, the
file exported from it under ``LETI_TRAIN_SELECTION``, and what the trainer's own reader keeps of
that file; ``NothingToTrain`` when nothing would be left."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from service.core.config import Settings
from service.loop.selection import nothing_selected, select_training_data
from service.store import lineage
from service.store.db import Store
from service.store.export import export_jsonl, export_records
from service.store.models import AdapterRow
from service.store.triples import TripleFilter, last_id, window_report
from trainer.data import DatasetError, read_triples_report


class NothingToTrain(ValueError):
    """No new triple since the last finished run (answered 409)."""


@dataclass(frozen=True)
class Window:
    """The triples no finished run has trained on (ids ``after`` < id <= ``upto``), what of
    them may be exported, and the adapter serving now."""

    after: int
    upto: int
    serving: AdapterRow | None  # None: the base model serves
    report: dict[str, Any]


def new_window(store: Store) -> Window:
    """The next run's window; ``NothingToTrain`` when it is empty or all held out."""
    with store.read() as session:
        after = lineage.last_trained_triple(session)
        upto = last_id(session)
        serving = lineage.serving_adapter(session)
        report = window_report(session, TripleFilter(after=after, upto=upto))
    if upto <= after:
        raise NothingToTrain("no new triples since the last training run")
    if report["exported"] == 0:
        held = ", ".join(f"{n} {why}" for why, n in report["not_exported"].items())
        raise NothingToTrain("none of the new triples may be trained on"
                             + (f" (held out: {held})" if held else ""))
    return Window(after, upto, serving, report)


def export_data(store: Store, settings: Settings, window: Window, data: Path) -> dict[str, Any]:
    """Write the run's training file under ``LETI_TRAIN_SELECTION``; the window's report with
    what was selected and what the trainer's reader keeps of it."""
    report = window.report
    if settings.train_selection == "accumulate":
        chosen = select_training_data(
            store, after=window.after, upto=window.upto, truncated=settings.train_truncated,
            max_passing=settings.train_max_passing_per_problem,
            max_failures=settings.train_max_failures_per_problem)
        if not chosen.records:
            raise NothingToTrain(nothing_selected(chosen.report) + " (cut at the token limit: "
                                 f"{chosen.report['failures']['truncated']})")
        export_records(data, chosen.records)
        report["selection"] = chosen.report
        data.with_suffix(".selection.json").write_text(
            json.dumps(chosen.report, indent=2), encoding="utf-8")
    else:
        export_jsonl(store, data, TripleFilter(after=window.after, upto=window.upto))
        report["selection"] = {"policy": "window", "kept": report["exported"]}
    report |= reader_report(data, settings.train_truncated)
    return report


def reader_report(data: Path, truncated: str) -> dict[str, Any]:
    """What the trainer's reader keeps of the file under ``truncated`` (the same function it
    runs). Raises ``NothingToTrain`` when nothing would be left."""
    try:
        _, read = read_triples_report(data, truncated=truncated)
    except DatasetError as exc:
        raise NothingToTrain(str(exc)) from None
    return {"trained_on": read.kept, "dropped": read.dropped, "marked": read.marked}
