"""The ``leti`` command. Entry points are thin: parse, build, call (one module per command group)."""

from __future__ import annotations

import typer

from service.cli import bench, evaluate, experiment, sandbox_cmds, serve, train, triples

app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="leti-loop: improve a code model from execution feedback (LETI).")
app.add_typer(sandbox_cmds.app, name="sandbox")
app.add_typer(bench.app, name="bench")
app.command("demo")(sandbox_cmds.demo)
app.command("evaluate-samples")(evaluate.evaluate_samples)
app.command("serve")(serve.serve)
app.add_typer(triples.app, name="triples")
app.command("train")(train.train)
app.command("experiment")(experiment.experiment)
