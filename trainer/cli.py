"""``leti train``: parse the flags into a ``LetiConfig`` and run it (also ``python -m trainer``).

The trainer runs as its own process (the service launches it the same way), so a crash or an
out-of-memory kill ends this process only. Exit codes: 0 success, 2 bad input (data, settings,
adapter), 1 anything else.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import SimpleNamespace
from typing import Annotated, Any

import typer

from trainer.config import LetiConfig
from trainer.selection import SelectionConfig

_HELP = {f.name: f.metadata.get("help", "") for cls in (LetiConfig, SelectionConfig)
         for f in dataclasses.fields(cls)}


# Every flag's default is its config field's: written once, in the dataclass.
D = SimpleNamespace(**{f.name: f.default for cls in (LetiConfig, SelectionConfig)
                       for f in dataclasses.fields(cls) if f.default is not dataclasses.MISSING})


# The flags named other than their field, and the selection flags (``SelectionConfig``'s fields).
_FIELD_OF = {"output": "output_dir", "rank": "lora_rank", "alpha": "lora_alpha",
             "dropout": "lora_dropout", "lr": "learning_rate", "schedule": "lr_schedule"}
_SELECTION_FLAGS = ("min_score", "keep_fraction", "clusters", "cluster_by")


def _h(name: str) -> str:
    """The help text of a config field: written once, in the dataclass."""
    return _HELP[name]


def train_command(
    data: Annotated[Path, typer.Option("--data", help=_h("data"))],
    output: Annotated[Path | None, typer.Option("--output", help=_h("output_dir") + " "
                                                   "Default: runs/run-<time>.")] = None,
    base_model: Annotated[str, typer.Option("--base-model", help=_h("base_model"))] = D.base_model,
    cache_dir: Annotated[Path | None, typer.Option(help=_h("cache_dir"))] = D.cache_dir,
    init_adapter: Annotated[Path | None, typer.Option(help=_h("init_adapter"))] = D.init_adapter,
    objective: Annotated[str, typer.Option(help=_h("objective"))] = D.objective,
    mask_prompt: Annotated[bool, typer.Option(help=_h("mask_prompt"))] = D.mask_prompt,
    code_ratio: Annotated[float, typer.Option(help=_h("code_ratio"))] = D.code_ratio,
    code_corpus: Annotated[str, typer.Option(help=_h("code_corpus"))] = D.code_corpus,
    code_block_size: Annotated[int | None,
                               typer.Option(help=_h("code_block_size"))] = D.code_block_size,
    laffi_ratio: Annotated[float, typer.Option(help=_h("laffi_ratio"))] = D.laffi_ratio,
    laffi_holdout: Annotated[float, typer.Option(help=_h("laffi_holdout"))] = D.laffi_holdout,
    rank: Annotated[int, typer.Option("--rank", help=_h("lora_rank"))] = D.lora_rank,
    alpha: Annotated[int | None, typer.Option("--alpha", help=_h("lora_alpha"))] = D.lora_alpha,
    dropout: Annotated[float, typer.Option("--dropout", help=_h("lora_dropout"))] = D.lora_dropout,
    target_modules: Annotated[str | None, typer.Option(
        help=_h("target_modules") + " Comma-separated.")] = None,
    lr: Annotated[float, typer.Option("--lr", help=_h("learning_rate"))] = D.learning_rate,
    weight_decay: Annotated[float, typer.Option(help=_h("weight_decay"))] = D.weight_decay,
    schedule: Annotated[str, typer.Option("--schedule", help=_h("lr_schedule"))] = D.lr_schedule,
    warmup_steps: Annotated[int, typer.Option(help=_h("warmup_steps"))] = D.warmup_steps,
    warmup_ratio: Annotated[float, typer.Option(help=_h("warmup_ratio"))] = D.warmup_ratio,
    batch_size: Annotated[int, typer.Option(help=_h("batch_size"))] = D.batch_size,
    grad_accum: Annotated[int, typer.Option(help=_h("grad_accum"))] = D.grad_accum,
    max_grad_norm: Annotated[float, typer.Option(help=_h("max_grad_norm"))] = D.max_grad_norm,
    packing: Annotated[bool, typer.Option(help=_h("packing"))] = D.packing,
    reuse_memory: Annotated[bool, typer.Option(help=_h("reuse_memory"))] = D.reuse_memory,
    epochs: Annotated[float, typer.Option(help=_h("epochs"))] = D.epochs,
    max_steps: Annotated[int | None, typer.Option(help=_h("max_steps"))] = D.max_steps,
    max_length: Annotated[int, typer.Option(help=_h("max_length"))] = D.max_length,
    truncated: Annotated[str | None, typer.Option(help=_h("truncated"))] = D.truncated,
    precision: Annotated[str, typer.Option(help=_h("precision"))] = D.precision,
    device: Annotated[str, typer.Option(help=_h("device"))] = D.device,
    seed: Annotated[int, typer.Option(help=_h("seed"))] = D.seed,
    save_every: Annotated[int, typer.Option(help=_h("save_every"))] = D.save_every,
    resume: Annotated[bool, typer.Option(help=_h("resume"))] = D.resume,
    events: Annotated[str | None, typer.Option(help=_h("events"))] = D.events,
    validate_load: Annotated[bool, typer.Option(help=_h("validate_load"))] = D.validate_load,
    progress: Annotated[bool, typer.Option(help="Show a progress bar on stderr.")] = True,
    min_score: Annotated[float, typer.Option(help=_h("min_score"))] = D.min_score,
    keep_fraction: Annotated[float, typer.Option(help=_h("keep_fraction"))] = D.keep_fraction,
    clusters: Annotated[int | None, typer.Option(help=_h("clusters"))] = D.clusters,
    cluster_by: Annotated[str, typer.Option(help=_h("cluster_by"))] = D.cluster_by,
) -> None:
    """Fine-tune a LoRA adapter on exported triples (LETI by default; see docs/TRAINING.md)."""
    _run(dict(locals()))  # every flag by its parameter name: the signature is the flag table


def _run(flags: dict[str, Any]) -> None:
    """Train with the flags' settings and say where the adapter went; bad input (data,
    settings, adapter) exits 2 with the reason, apart from a crash's 1."""
    from rich.console import Console

    from trainer.adapters import AdapterError
    from trainer.base_model import BaseModelError
    from trainer.checkpoint import ResumeError
    from trainer.corpus import CorpusError
    from trainer.data import DatasetError
    from trainer.train import train
    from trainer.train_config import ConfigError

    err = Console(stderr=True)
    progress = flags.pop("progress") and flags["events"] != "-"
    try:
        result = train(_config(flags), progress=progress)
    except (ConfigError, DatasetError, CorpusError, AdapterError, ResumeError, BaseModelError,
            ValueError) as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    if not result.metrics:  # a non-main process of a data-parallel run: rank 0 reports
        return
    loss = result.metrics["loss"].get("feedback", {})
    err.print(f"adapter: {result.adapter}\nmetrics: {result.metrics_path}\n"
              f"feedback loss: {loss.get('first', float('nan')):.4f} -> "
              f"{loss.get('last', float('nan')):.4f}", highlight=False)


def _config(flags: dict[str, Any]) -> LetiConfig:
    """The settings the flags give: a flag named as its field passes straight through, the short
    names people type (``--rank``, ``--lr``...) are renamed, the selection flags make their own
    config."""
    from trainer.train import default_output

    settings = {_FIELD_OF.get(name, name): value for name, value in flags.items()
                if name not in _SELECTION_FLAGS}
    settings["output_dir"] = settings["output_dir"] or default_output(Path("runs"))
    modules = settings["target_modules"]
    settings["target_modules"] = tuple(modules.split(",")) if modules else None
    selection = SelectionConfig(**{name: flags[name] for name in _SELECTION_FLAGS},
                                seed=flags["seed"])
    return LetiConfig(**settings, selection=selection)


app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="LETI training (runs as its own process).")


@app.callback()
def _group() -> None:
    """Keep ``train`` a named sub-command, as it is under ``leti``."""


app.command("train")(train_command)


if __name__ == "__main__":
    app()
