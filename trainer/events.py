"""Progress for machines (JSON lines the service reads) and for people (a rich progress bar).

Every event is one JSON object per line with ``event`` and ``time`` (Unix seconds) fields:

* ``start``      — ``total_steps``, ``examples``, ``objective``, ``resumed_from`` (step or null)
* ``step``       — ``step`` (1-based), ``total_steps``, ``kind`` (feedback|code), ``loss``, ``lr``,
                   ``tokens``, ``tokens_per_s``, ``elapsed_s``, ``eta_s``, ``cpu_s`` (this
                   process's CPU time in the loop since it started or resumed)
* ``checkpoint`` — ``step``, ``path``
* ``eval``       — ``name`` and its figures (e.g. LaFFi accuracy)
* ``done``       — ``adapter``, ``metrics`` (path), ``steps``
* ``error``      — ``message`` (the run failed; the process exits non-zero)

They always go to ``<output_dir>/events.jsonl`` (appended across resumes) and, when asked, to a
second file or stdout, flushed per line so a reader sees them as they happen.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import IO, Any, Self


class EventLog:
    """Writes events as JSON lines; optionally mirrors step events to a rich progress bar."""

    def __init__(self, path: Path | None, *, extra: str | None = None,
                 progress: bool = False) -> None:
        self._sinks: list[IO[str]] = []
        self._owned: list[IO[str]] = []
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._open(path)
        if extra == "-":
            self._sinks.append(sys.stdout)
        elif extra:
            self._open(Path(extra))
        self._progress: Any = None
        self._bar: Any = None
        self._want_progress = progress

    def _open(self, path: Path) -> None:
        fh = path.open("a", encoding="utf-8")
        self._sinks.append(fh)
        self._owned.append(fh)

    def emit(self, event: str, **fields: Any) -> dict[str, Any]:
        """Write one event to every sink and return it."""
        record = {"event": event, "time": round(time.time(), 3), **fields}
        line = json.dumps(record, default=str)
        for sink in self._sinks:
            sink.write(line + "\n")
            sink.flush()
        self._show(record)
        return record

    def _show(self, record: dict[str, Any]) -> None:
        if not self._want_progress:
            return
        if record["event"] == "start":
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._progress = Progress(TextColumn("[bold]training"), BarColumn(),
                                      MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
                                      TimeElapsedColumn(), TimeRemainingColumn(),
                                      console=Console(stderr=True))
            self._progress.start()
            done = record.get("resumed_from") or 0
            self._bar = self._progress.add_task("train", total=record["total_steps"],
                                                completed=done, info="")
        elif record["event"] == "step" and self._progress is not None:
            info = (f"loss {record['loss']:.3f} ({record['kind']}) "
                    f"{record['tokens_per_s']:.0f} tok/s")
            self._progress.update(self._bar, completed=record["step"], info=info)
        elif record["event"] in ("done", "error") and self._progress is not None:
            self._progress.stop()
            self._progress = None

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
        for fh in self._owned:
            fh.close()
        self._owned.clear()
        self._sinks.clear()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_events(path: Path) -> list[dict[str, Any]]:
    """Parse an events file (the service's reader does the same, line by line)."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]
