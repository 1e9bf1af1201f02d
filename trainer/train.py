"""The LETI training loop, readable top to bottom.

    read triples -> (select) -> sequences -> LoRA model -> [resume] -> steps -> adapter -> validate

``_setup`` builds everything the first step needs (the data side in ``trainer.prepare``), ``_train``
runs the steps, reporting and checkpointing as it goes, and ``finish_run`` (``trainer.outputs``)
saves and checks the adapter. Each optimiser step is either a *feedback* step (LETI/LaFFi/SFT
sequences) or a *code* step (plain code, LETI's guard against forgetting), interleaved at
``code_ratio``. Under ``accelerate launch`` or ``torchrun`` the same loop runs data-parallel:
every process draws the same global batch and trains on its slice; only the main process writes
files.
"""

from __future__ import annotations

import math
import os
import random
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from trainer import checkpoint as ckpt
from trainer.batches import Encoded, encode_code, step_kind, total_steps
from trainer.config import LetiConfig
from trainer.data import file_sha256, read_triples_report
from trainer.events import EventLog
from trainer.memory import keep_freed_memory
from trainer.outputs import TrainResult, finish_run
from trainer.packing import micro_batch_loss
from trainer.precision import Precision, training_precision
from trainer.prepare import RunData, lora_model, lr_schedule, prepare_data


def train(config: LetiConfig, *, progress: bool = False) -> TrainResult:
    """Run (or resume) one training run; every failure is also reported as an ``error`` event."""
    config.output_dir.mkdir(parents=True, exist_ok=True)
    main = int(os.environ.get("RANK", "0")) == 0  # under a launcher, one process reports
    events = EventLog(config.output_dir / "events.jsonl" if main else None,
                      extra=config.events if main else None, progress=progress and main)
    try:
        return _train(config, events)
    except BaseException as exc:
        events.emit("error", message=f"{type(exc).__name__}: {exc}")
        raise
    finally:
        events.close()


@dataclass
class _Run:
    """What the loop works on, built once by ``_setup``; the last four fields move with every
    step, and a checkpoint brings them back."""

    config: LetiConfig
    accelerator: Any
    model: Any
    tokenizer: Any
    optimizer: Any
    scheduler: Any
    params: list[Any]  # the weights that learn: what is clipped and stepped
    pad_id: int
    precision: Precision
    steps: int
    data_sha: str
    data: RunData
    start: int = 0  # optimiser steps already taken (by the run a checkpoint came from)
    history: list[dict[str, Any]] = field(default_factory=list)
    tokens: int = 0
    elapsed_before: float = 0.0  # seconds spent before the checkpoint resumed from

    @property
    def main(self) -> bool:
        """Whether this process writes events, checkpoints and outputs."""
        return bool(self.accelerator.is_main_process)


def _train(config: LetiConfig, events: EventLog) -> TrainResult:
    """``train`` without the error event: set up, take the steps, save and check the adapter."""
    run = _setup(config, events)
    if config.reuse_memory:  # every step frees and re-allocates the same activations
        keep_freed_memory()
    run.model.train()
    code_ratio = config.code_ratio if run.data.code is not None else 0.0
    t0, cpu0 = time.perf_counter(), time.process_time()
    with run.precision.applied(run.model):  # the frozen base in bf16, where chosen
        for step in range(run.start, run.steps):
            kind = step_kind(step, code_ratio)
            loss, tokens = _optimiser_step(run, kind)
            run.tokens += tokens
            run.history.append({"step": step + 1, "kind": kind, "loss": round(loss, 6)})
            elapsed = run.elapsed_before + time.perf_counter() - t0
            if run.main and ((step + 1) % config.log_every == 0 or step + 1 == run.steps):
                _report_step(events, run, step + 1, kind, loss, elapsed,
                             cpu_s=time.process_time() - cpu0)
            saving = config.save_every and (step + 1) % config.save_every == 0
            if run.main and saving and step + 1 < run.steps:
                _save_checkpoint(events, run, step + 1, elapsed)
    return _finish(events, run, elapsed=run.elapsed_before + time.perf_counter() - t0)


def _setup(config: LetiConfig, events: EventLog) -> _Run:
    """Everything the first step needs, in the order that makes a seed's run repeat bit for bit
    (the LoRA weights are drawn after the data is prepared), resumed from the newest checkpoint
    when there is one."""
    import torch
    from accelerate import Accelerator

    from trainer.base_model import load_base_model

    # --- data first: a broken file fails in a second, before any model is loaded -------------
    triples, read = read_triples_report(config.data, truncated=config.truncated)
    data_sha = file_sha256(config.data)

    accelerator = Accelerator(cpu=config.device == "cpu")
    random.seed(config.seed)
    torch.manual_seed(config.seed)  # LoRA init and dropout: same seed, same run
    device = "cpu" if accelerator.device.type == "cpu" else str(accelerator.device)
    precision = training_precision(config.precision, device)
    model, tokenizer = load_base_model(config.base_model, config.cache_dir, device=device,
                                       dtype=precision.weights)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None \
        else tokenizer.eos_token_id
    world = accelerator.num_processes
    data = prepare_data(config, triples, read, model, tokenizer,
                        rank=accelerator.process_index, world=world)

    # --- the LoRA model: fresh on the base, or continuing the parent adapter ------------------
    model = lora_model(model, config)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate,
                                  weight_decay=config.weight_decay)
    steps = run_steps(config, len(data.encoded), world)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_schedule(config, steps))
    run = _Run(config, accelerator, model, tokenizer, optimizer, scheduler, params, pad_id,
               precision, steps, data_sha, data)
    resumed = _resume(run)
    run.model, run.optimizer = accelerator.prepare(run.model, run.optimizer)
    if run.main:
        events.emit("start", total_steps=steps, examples=len(data.encoded),
                    triples=data.summary.triples, objective=config.objective,
                    resumed_from=run.start if resumed else None, processes=world,
                    device=str(accelerator.device), precision=precision.name)
    return run


def _resume(run: _Run) -> bool:
    """Bring back from the newest checkpoint everything the next step depends on (weights,
    optimiser, schedule, both streams' positions, the counters); whether there was one.
    ``--no-resume`` clears the old checkpoints instead."""
    config = run.config
    last = ckpt.latest_checkpoint(config.output_dir) if config.resume else None
    if not config.resume and run.main:
        ckpt.clear_checkpoints(config.output_dir)
    if last is None:
        return False
    ckpt.check_same_run(last, config.to_dict(), run.data_sha)
    ckpt.load_checkpoint(last, run.model, run.optimizer, run.scheduler)
    run.start, run.history = last.step, last.state["history"]
    run.tokens, run.elapsed_before = last.state["tokens"], last.state["elapsed_s"]
    run.data.stream.load_state(last.state["stream"])
    if run.data.code is not None:
        run.data.code.load_state(last.state["code"])
    return True


def _optimiser_step(run: _Run, kind: str) -> tuple[float, int]:
    """One optimiser step over ``grad_accum`` micro-batches; the global batch's mean loss and
    its tokens, summed over every process."""
    config, accelerator = run.config, run.accelerator
    loss_sum, step_tokens = 0.0, 0
    for micro in range(config.grad_accum):
        batch = _micro_batch(run, kind)
        last_micro = micro == config.grad_accum - 1
        # gradients are all-reduced once per optimiser step, not once per micro-batch
        with nullcontext() if last_micro else accelerator.no_sync(run.model):
            # packed (one row, no padding) or padded: the same mean loss over the targets
            loss, tokens = micro_batch_loss(run.model, batch, packing=config.packing,
                                            pad_id=run.pad_id, device=accelerator.device)
            loss = loss / config.grad_accum
            accelerator.backward(loss)
        loss_sum += float(loss.detach())
        step_tokens += tokens
    world = accelerator.num_processes
    if world > 1:  # report the global batch: mean loss and all tokens across processes
        import torch

        totals = accelerator.reduce(
            torch.tensor([loss_sum, float(step_tokens)], device=accelerator.device),
            reduction="sum")
        loss_sum, step_tokens = float(totals[0]) / world, int(totals[1])
    if config.max_grad_norm > 0:
        accelerator.clip_grad_norm_(run.params, config.max_grad_norm)
    run.optimizer.step()
    run.scheduler.step()
    run.optimizer.zero_grad(set_to_none=True)
    return loss_sum, step_tokens


def _micro_batch(run: _Run, kind: str) -> list[Encoded]:
    """This process's sequences for one micro-batch of a feedback or a code step."""
    size = run.config.batch_size
    if kind == "feedback":
        return run.data.stream.next_batch(size)
    # every process reads the same global code batch and keeps its slice
    world = run.accelerator.num_processes
    blocks = run.data.code.blocks(size * world)
    return [encode_code(b) for b in blocks[run.accelerator.process_index::world]]


def _report_step(events: EventLog, run: _Run, done: int, kind: str, loss: float,
                 elapsed: float, *, cpu_s: float) -> None:
    """The ``step`` event: loss and learning rate, and the throughput and time left so far."""
    rate = run.tokens / elapsed if elapsed > 0 else 0.0
    eta = elapsed / done * (run.steps - done)
    events.emit("step", step=done, total_steps=run.steps, kind=kind, loss=round(loss, 6),
                lr=run.scheduler.get_last_lr()[0], tokens=run.tokens,
                tokens_per_s=round(rate, 1), elapsed_s=round(elapsed, 2), eta_s=round(eta, 1),
                cpu_s=round(cpu_s, 2))


def _save_checkpoint(events: EventLog, run: _Run, done: int, elapsed: float) -> None:
    """Write what ``_resume`` needs to continue from step ``done`` exactly as this run would."""
    code = run.data.code
    state = {"history": run.history, "tokens": run.tokens, "elapsed_s": elapsed,
             "stream": run.data.stream.state(), "code": code.state() if code else None,
             "data_sha256": run.data_sha, "settings": run.config.to_dict()}
    model = run.accelerator.unwrap_model(run.model)
    path = ckpt.save_checkpoint(run.config.output_dir, done, model, run.optimizer, run.scheduler,
                                state, keep=run.config.keep_checkpoints)
    events.emit("checkpoint", step=done, path=str(path))


def _finish(events: EventLog, run: _Run, *, elapsed: float) -> TrainResult:
    """Adapter, validation, metrics and manifest, written by the main process only; the others
    return the paths with no metrics."""
    out = run.config.output_dir
    if not run.main:
        return TrainResult(out / "adapter", out / "metrics.json", out / "manifest.json", {})
    data = run.data
    return finish_run(run.config, run.accelerator.unwrap_model(run.model), run.tokenizer, events,
                      history=run.history, tokens=run.tokens, elapsed=elapsed,
                      data_sha=run.data_sha, summary=asdict(data.summary),
                      selection=data.selection, heldout=data.heldout,
                      probe=data.encoded[0].input_ids, steps=run.steps,
                      precision=run.precision.name)


def run_steps(config: LetiConfig, examples: int, world: int = 1) -> int:
    """The run's optimiser steps: ``epochs`` passes over the examples in feedback steps of
    ``batch_size x grad_accum x processes`` sequences, plus code steps at ``code_ratio``;
    ``max_steps`` only bounds it (a run is sized by its data, never stretched past it)."""
    per_step = config.batch_size * config.grad_accum * world
    feedback_steps = max(1, math.ceil(config.epochs * examples / per_step))
    steps = total_steps(feedback_steps, config.code_ratio)
    return min(steps, config.max_steps) if config.max_steps is not None else steps


def default_output(root: Path) -> Path:
    """A fresh run directory under ``root`` named by the time (``leti train`` without --output)."""
    return Path(root) / time.strftime("run-%Y%m%d-%H%M%S")
