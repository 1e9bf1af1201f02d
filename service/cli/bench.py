"""``leti bench ...``: benchmarks that compare against a named anchor in the same run."""

from __future__ import annotations

import typer

from service.cli import bench_api, bench_dtype, bench_generate, bench_sandbox, bench_train

app = typer.Typer(no_args_is_help=True, help="Benchmarks (figures go into docs/BENCHMARKS.md).")
app.command("sandbox")(bench_sandbox.sandbox)
app.command("generate")(bench_generate.generate)
app.command("api")(bench_api.api)
app.command("train")(bench_train.train)
app.command("dtype")(bench_dtype.dtype)
