"""``leti triples export``: write training triples for the trainer, straight from the store."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

app = typer.Typer(no_args_is_help=True, help="Training triples in the store.")


@app.command("export")
def export(
    out: Annotated[Path, typer.Option("--out", help="JSON-lines file (a folder with --format hf)")],
    fmt: Annotated[str, typer.Option(
        "--format", help="jsonl (the trainer's input) or hf (a folder datasets.load_dataset "
                         "reads)")] = "jsonl",
    source: Annotated[str | None, typer.Option(help="sandbox or external")] = None,
    reward: Annotated[str | None, typer.Option(help="good or bad")] = None,
    kind: Annotated[str | None, typer.Option(help="mbpp, humaneval or user")] = None,
    cursor: Annotated[int | None, typer.Option(help="only triples after this id")] = None,
) -> None:
    """Export triples in the format of docs/ARCHITECTURE.md ("Training triples")."""
    from service.core.config import Settings
    from service.store.db import Store
    from service.store.export import export_hf, export_jsonl
    from service.store.triples import TripleFilter, last_id, window_report

    if fmt not in ("jsonl", "hf"):
        raise typer.BadParameter("choose jsonl or hf", param_hint="--format")
    store = Store(Settings().resolved_database_url)
    try:
        store.migrate()
        with store.read() as session:
            where = TripleFilter(source=source, reward=reward, kind=kind, after=cursor,
                                 upto=last_id(session))
            report = window_report(session, where)
        write = export_hf if fmt == "hf" else export_jsonl
        count = write(store, out, where)
    finally:
        store.close()
    err = Console(stderr=True)
    err.print(f"wrote {count} triples to {out}", highlight=False, soft_wrap=True)
    if report["not_exported"]:
        held = ", ".join(f"{n} {why}" for why, n in report["not_exported"].items())
        err.print(f"not exported (held out from training): {held}", highlight=False,
                  soft_wrap=True)
    if report["truncated_failures"]:
        err.print(f"{report['truncated_failures']} of them are failed programs cut at the token "
                  "limit: `leti train` drops those (LETI_TRAIN_TRUNCATED=mark or keep uses "
                  "them)", highlight=False, soft_wrap=True)


