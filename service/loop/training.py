"""Training runs: export the new triples (``training_data``), launch ``python -m trainer train`` as
its own process, follow its JSON-line events, and record the run (and its adapter, or its
failure) in the store.

The trainer is a subprocess so that a crash or an out-of-memory kill ends the run, never the API;
its exit code and last ``error`` event become the run's recorded failure.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from service.core.config import Settings
from service.loop.training_data import export_data, new_window
from service.store import lineage
from service.store.db import Store
from trainer.data import TRUNCATED_ENV, file_sha256

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PreparedRun:
    """A run recorded as ``running``, with its data exported and its command built."""

    run_id: str
    output_dir: Path
    command: list[str]
    parent_adapter: str | None
    env: dict[str, str] = field(default_factory=dict)  # added to the trainer's environment


@dataclass(frozen=True)
class TrainOptions:
    """Trainer flags beyond the loop's settings (the experiment's ablations set these; the loop
    uses the defaults). ``None`` keeps the setting or the trainer's own default."""

    objective: str = "leti"
    code_ratio: float | None = None
    learning_rate: float | None = None
    lora_rank: int | None = None
    seed: int | None = None
    epochs: float | None = None


def trainer_command(data: Path, output: Path, *, base_model: str, steps: int,
                    settings: Settings, init_adapter: str | None = None,
                    options: TrainOptions | None = None) -> list[str]:
    """``python -m trainer train ...`` for one run: the one place the service spells the
    trainer's command line (the loop and ``leti experiment`` both launch it). The run is
    sized by its data (``--epochs``); ``steps`` only bounds it."""
    options = options or TrainOptions()
    code_ratio = settings.train_code_ratio if options.code_ratio is None else options.code_ratio
    epochs = settings.train_epochs if options.epochs is None else options.epochs
    lr = settings.train_learning_rate if options.learning_rate is None else options.learning_rate
    command = [sys.executable, "-m", "trainer", "train", "--data", str(data),
               "--output", str(output), "--base-model", base_model,
               "--objective", options.objective,
               "--epochs", str(epochs), "--max-steps", str(steps),
               "--batch-size", str(settings.train_batch_size),
               "--grad-accum", str(settings.train_grad_accum),
               "--max-length", str(settings.train_max_length),
               "--code-ratio", str(code_ratio), "--lr", str(lr),
               "--schedule", settings.train_lr_schedule,
               "--warmup-ratio", str(settings.train_warmup_ratio),
               "--min-score", str(settings.train_min_score),
               "--keep-fraction", str(settings.train_keep_fraction),
               # checkpoints along the way: a run re-launched with the same output resumes
               "--save-every", str(max(1, steps // 4)),
               "--events", "-", "--no-progress"]
    if options.lora_rank is not None:
        command += ["--rank", str(options.lora_rank)]
    if options.seed is not None:
        command += ["--seed", str(options.seed)]
    if init_adapter is not None:
        command += ["--init-adapter", init_adapter]
    return command


def prepare_run(store: Store, settings: Settings, steps: int | None = None,
                options: TrainOptions | None = None) -> PreparedRun:
    """Select and export what the next run trains on and record the run: with
    ``LETI_TRAIN_SELECTION=accumulate`` every passing program so far and the failures no
    finished run has trained on (``selection.select_training_data``), else only the new
    triples. It starts from a fresh adapter on the base model, or from the serving adapter
    (``LETI_TRAIN_INIT``). ``steps`` overrides ``LETI_TRAIN_STEPS`` (the bound on the run's
    steps); ``options`` sets further trainer flags."""
    steps = steps or settings.train_steps
    options = options or TrainOptions()
    window = new_window(store)
    runs_dir = settings.adapters_dir
    runs_dir.mkdir(parents=True, exist_ok=True)
    data = runs_dir / f"triples-{window.after + 1}-{window.upto}.jsonl"
    report = export_data(store, settings, window, data)
    serving = window.serving
    init = serving.path if serving is not None and settings.train_init == "serving" else None
    config = _run_config(settings, steps, init, report, options)
    with store.write() as session:
        run = lineage.start_training_run(
            session, parent_adapter_id=serving.id if serving else None, data_path=str(data),
            data_sha256=file_sha256(data), triples_from=window.after + 1, triples_to=window.upto,
            config=config)
        output = runs_dir / f"run-{run.id}"
        run.config = {**config, "output_dir": str(output)}
    command = trainer_command(data, output, base_model=config["base_model"], steps=steps,
                              settings=settings, init_adapter=init, options=options)
    return PreparedRun(run.id, output, command, serving.id if serving else None,
                       env=trainer_env(settings))


def _run_config(settings: Settings, steps: int, init: str | None, report: dict[str, Any],
                options: TrainOptions) -> dict[str, Any]:
    """The run's settings as recorded with it; ``data`` says what it trains on and why."""
    return {"steps": steps, "epochs": settings.train_epochs,
            "batch_size": settings.train_batch_size, "grad_accum": settings.train_grad_accum,
            "max_length": settings.train_max_length, "code_ratio": settings.train_code_ratio,
            "learning_rate": settings.train_learning_rate,
            "schedule": settings.train_lr_schedule,
            "warmup_ratio": settings.train_warmup_ratio, "truncated": settings.train_truncated,
            "init": settings.train_init, "init_adapter": init,
            "base_model": settings.generator_model or "default", "data": report,
            **{k: v for k, v in asdict(options).items() if v is not None}}


def trainer_env(settings: Settings) -> dict[str, str]:
    """What the trainer reads from its environment: the truncated-failure policy."""
    return {TRUNCATED_ENV: settings.train_truncated}


def next_adapter_name(store: Store, alias: str, loaded_version: int) -> str:
    """``<alias>-vN`` with N above every version in the store and in the generator, so names
    never collide, after a restart either."""
    with store.read() as session:
        names = lineage.adapter_ids(session)
    versions = [int(n.rsplit("-v", 1)[1]) for n in names
                if n.startswith(f"{alias}-v") and n.rsplit("-v", 1)[1].isdigit()]
    return f"{alias}-v{max([loaded_version, *versions]) + 1}"


class TrainerProcess:
    """One running trainer: its pid, the events seen so far, and how it ended."""

    def __init__(self, prepared: PreparedRun) -> None:
        self.prepared = prepared
        self.process: asyncio.subprocess.Process | None = None
        self.last_event: dict[str, Any] | None = None
        self.error: str | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    async def run(self) -> Path | None:
        """Run to the end; the adapter directory, or None with ``error`` set."""
        out = self.prepared.output_dir
        out.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **self.prepared.env} if self.prepared.env else None
        with (out / "trainer.log").open("ab") as stderr:
            self.process = await asyncio.create_subprocess_exec(
                *self.prepared.command, stdout=asyncio.subprocess.PIPE, stderr=stderr, env=env)
            assert self.process.stdout is not None
            async for raw in self.process.stdout:
                try:
                    event = json.loads(raw)
                except ValueError:
                    continue  # a stray print from a library
                self.last_event = event
                if event.get("event") == "error":
                    self.error = str(event.get("message"))
            code = await self.process.wait()
        if code == 0 and self.last_event and self.last_event.get("event") == "done":
            return Path(str(self.last_event["adapter"]))
        self.error = self.error or f"the trainer exited with code {code}" + \
            (" (killed by a signal)" if code < 0 else "")
        return None


def finish_run(store: Store, run_id: str, *, adapter_name: str | None, adapter_dir: Path | None,
               base_model: str, parent: str | None, error: str | None) -> None:
    """Record the run's end: its candidate adapter, or the failure (the serving one stays)."""
    metrics_file = adapter_dir.parent / "metrics.json" if adapter_dir is not None else None
    metrics = None
    if metrics_file is not None and metrics_file.is_file():
        full = json.loads(metrics_file.read_text(encoding="utf-8"))
        metrics = {k: _no_lists(full[k]) for k in ("steps", "tokens", "tokens_per_s", "loss")
                   if k in full}
    with store.write() as session:
        row = None
        if adapter_dir is not None and adapter_name is not None and error is None:
            row = lineage.register_adapter(session, name=adapter_name, path=str(adapter_dir),
                                           base_model=base_model, parent_id=parent,
                                           metrics={"training": metrics})
        lineage.finish_training_run(session, run_id, adapter=row, metrics=metrics, error=error)


def _no_lists(value: Any) -> Any:
    """A summary without the long per-step histories."""
    if isinstance(value, dict):
        return {k: _no_lists(v) for k, v in value.items() if not isinstance(v, list)}
    return value


def fail_interrupted_runs(store: Store) -> int:
    """Runs still ``running`` at start-up died with the previous service: record them failed."""
    with store.write() as session:
        rows = lineage.unfinished_training_runs(session)
        for row in rows:
            lineage.finish_training_run(session, row.id, adapter=None, metrics=row.metrics,
                                        error="interrupted: the service stopped during the run")
    return len(rows)


def run_progress(store: Store, run_id: str) -> dict[str, Any] | None:
    """A run as stored, with its progress read from the trainer's own events file."""
    with store.read() as session:
        run = lineage.get_training_run(session, run_id)
        if run is None:
            return None
    events_file = Path(str((run.config or {}).get("output_dir", ""))) / "events.jsonl"
    step: dict[str, Any] | None = None
    if events_file.is_file():
        for line in events_file.read_text(encoding="utf-8").splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event.get("event") == "step":
                step = event
    return {"id": run.id, "status": run.status, "parent_adapter": run.parent_adapter_id,
            "adapter": run.output_adapter_id, "triples": [run.triples_from, run.triples_to],
            "data": run.data_path, "config": run.config, "metrics": run.metrics,
            "error": run.error, "started_at": run.started_at.isoformat(),
            "finished_at": run.finished_at.isoformat() if run.finished_at else None,
            "step": step["step"] if step else 0,
            "total_steps": step["total_steps"] if step else run.config.get("steps"),
            "loss": step["loss"] if step else None}
