"""``leti serve``: the REST API on uvicorn (settings from ``LETI_*`` and ``.env``; docs/API.md)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console


def serve(
    host: Annotated[str | None, typer.Option(help="bind address (default: LETI_HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="port (default: LETI_PORT)")] = None,
    log_level: Annotated[str, typer.Option(help="uvicorn log level")] = "info",
    loop: Annotated[bool | None, typer.Option(
        "--loop/--no-loop", help="run the self-improvement loop (default: on, unless "
                                 "LETI_LOOP_ENABLED=false; docs/LOOP.md)")] = None,
) -> None:
    """Serve generate/evaluate/feedback/triples on HTTP; OpenAPI docs at /docs."""
    from pydantic import ValidationError

    from service.core.config import Settings

    try:
        settings = Settings()
    except ValidationError as exc:
        Console(stderr=True).print(f"[red]invalid settings:[/red]\n{exc}")
        raise typer.Exit(2) from None
    if loop is not None or "loop_enabled" not in settings.model_fields_set:
        # The main job: `leti serve` runs the loop unless told otherwise.
        settings = settings.model_copy(update={"loop_enabled": True if loop is None else loop})
    import uvicorn

    from service.api.app import create_app

    uvicorn.run(create_app(settings), host=host or settings.host, port=port or settings.port,
                log_level=log_level, timeout_graceful_shutdown=30)
