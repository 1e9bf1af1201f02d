"""``leti serve``: the REST API on uvicorn (settings from ``LETI_*`` and ``.env``; docs/API.md)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console


def serve(
    host: Annotated[str | None, typer.Option(help="bind address (default: LETI_HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="port (default: LETI_PORT)")] = None,
    log_level: Annotated[str, typer.Option(help="uvicorn log level")] = "info",
) -> None:
    """Serve generate/evaluate/feedback/triples on HTTP; OpenAPI docs at /docs."""
    from pydantic import ValidationError

    from service.core.config import Settings

    try:
        settings = Settings()
    except ValidationError as exc:
        Console(stderr=True).print(f"[red]invalid settings:[/red]\n{exc}")
        raise typer.Exit(2) from None
    import uvicorn

    from service.api.app import create_app

    uvicorn.run(create_app(settings), host=host or settings.host, port=port or settings.port,
                log_level=log_level, timeout_graceful_shutdown=30)
