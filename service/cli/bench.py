"""``leti bench ...``: benchmarks that compare against a named anchor in the same run."""

from __future__ import annotations

import typer

app = typer.Typer(no_args_is_help=True, help="Benchmarks (figures go into docs/BENCHMARKS.md).")
