"""The LETI training loop, readable top to bottom.

    read triples -> (select) -> sequences -> LoRA model -> [resume] -> steps -> adapter -> validate

Each optimiser step is either a *feedback* step (LETI/LaFFi/SFT sequences) or a *code* step
(plain code, LETI's guard against forgetting), interleaved at ``code_ratio``. Under
``accelerate launch`` or ``torchrun`` the same loop runs data-parallel: every process draws the
same global batch and trains on its slice; only the main process writes files.
"""

from __future__ import annotations

import math
import os
import random
import time
from contextlib import nullcontext
from dataclasses import asdict
from pathlib import Path
from typing import Any

from trainer import checkpoint as ckpt
from trainer.batches import (
    Encoded,
    ExampleStream,
    encode_code,
    encode_example,
    step_kind,
    total_steps,
)
from trainer.config import ConfigError, LetiConfig
from trainer.data import (
    DatasetError,
    DataSummary,
    feedback_examples,
    file_sha256,
    read_triples_report,
    split_by_task,
)
from trainer.events import EventLog
from trainer.memory import keep_freed_memory
from trainer.outputs import TrainResult, finish_run, lora_targets, prepare_selection
from trainer.packing import micro_batch_loss
from trainer.precision import training_precision


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


def _train(config: LetiConfig, events: EventLog) -> TrainResult:
    import torch
    from accelerate import Accelerator

    from trainer.base_model import load_base_model

    # --- data first: a broken file fails in a second, before any model is loaded -------------
    triples, read = read_triples_report(config.data, truncated=config.truncated)
    data_sha = file_sha256(config.data)

    accelerator = Accelerator(cpu=config.device == "cpu")
    main = accelerator.is_main_process
    random.seed(config.seed)
    torch.manual_seed(config.seed)  # LoRA init and dropout: same seed, same run
    device = "cpu" if accelerator.device.type == "cpu" else str(accelerator.device)
    precision = training_precision(config.precision, device)
    model, tokenizer = load_base_model(config.base_model, config.cache_dir, device=device,
                                       dtype=precision.weights)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None \
        else tokenizer.eos_token_id
    embed = None
    if config.selection.active and config.selection.cluster_by == "embeddings":
        from trainer.selection import model_embedder

        embed = model_embedder(model, tokenizer)
    triples, selection = prepare_selection(triples, config, embed=embed)
    heldout: list[Any] = []
    if config.laffi_ratio > 0 and config.laffi_holdout > 0:
        triples, heldout = split_by_task(triples, config.laffi_holdout, seed=config.seed)
        heldout = heldout[:config.laffi_eval_max]

    # --- sequences: the prompt text comes from trainer.prompts, as at sampling time -----------
    encoded, summary = _sequences(config, triples, tokenizer)
    summary.heldout_triples = len(heldout)
    # what the reader left out of the file (failed programs cut at the token limit, by policy)
    summary.read, summary.truncated_policy = read.read, read.policy
    summary.dropped, summary.marked = dict(read.dropped), read.marked
    rank, world = accelerator.process_index, accelerator.num_processes
    stream = ExampleStream(encoded, seed=config.seed, rank=rank, world_size=world)
    code = _code_stream(config, tokenizer) if config.code_ratio > 0 else None

    # --- the LoRA model: fresh on the base, or continuing the parent adapter ------------------
    model = _lora_model(model, config)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate,
                                  weight_decay=config.weight_decay)
    steps = run_steps(config, len(encoded), world)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _schedule(config, steps))

    # --- resume: everything the next step depends on comes back from the checkpoint ----------
    start, history, tokens_done, elapsed_before = 0, [], 0, 0.0
    last = ckpt.latest_checkpoint(config.output_dir) if config.resume else None
    if not config.resume and main:
        ckpt.clear_checkpoints(config.output_dir)
    if last is not None:
        ckpt.check_same_run(last, config.to_dict(), data_sha)
        ckpt.load_checkpoint(last, model, optimizer, scheduler)
        start, history = last.step, last.state["history"]
        tokens_done, elapsed_before = last.state["tokens"], last.state["elapsed_s"]
        stream.load_state(last.state["stream"])
        if code is not None:
            code.load_state(last.state["code"])
    model, optimizer = accelerator.prepare(model, optimizer)
    if main:
        events.emit("start", total_steps=steps, examples=len(encoded), triples=len(triples),
                    objective=config.objective, resumed_from=start if last else None,
                    processes=accelerator.num_processes, device=str(accelerator.device),
                    precision=precision.name)

    # --- the loop --------------------------------------------------------------------------
    if config.reuse_memory:  # every step frees and re-allocates the same activations
        keep_freed_memory()
    model.train()
    t0, cpu0 = time.perf_counter(), time.process_time()
    with precision.applied(model):  # the frozen base in bf16, where chosen
        for step in range(start, steps):
            kind = step_kind(step, config.code_ratio if code is not None else 0.0)
            loss_sum, step_tokens = 0.0, 0
            for micro in range(config.grad_accum):
                if kind == "feedback":
                    batch = stream.next_batch(config.batch_size)
                else:  # every process reads the same global code batch and keeps its slice
                    blocks = code.blocks(config.batch_size * world)  # type: ignore[union-attr]
                    batch = [encode_code(b) for b in blocks[rank::world]]
                last_micro = micro == config.grad_accum - 1
                # gradients are all-reduced once per optimiser step, not once per micro-batch
                with nullcontext() if last_micro else accelerator.no_sync(model):
                    # packed (one row, no padding) or padded: the same mean loss over the targets
                    loss, tokens = micro_batch_loss(model, batch, packing=config.packing,
                                                    pad_id=pad_id, device=accelerator.device)
                    loss = loss / config.grad_accum
                    accelerator.backward(loss)
                loss_sum += float(loss.detach())
                step_tokens += tokens
            if world > 1:  # report the global batch: mean loss and all tokens across processes
                totals = accelerator.reduce(
                    torch.tensor([loss_sum, float(step_tokens)], device=accelerator.device),
                    reduction="sum")
                loss_sum, step_tokens = float(totals[0]) / world, int(totals[1])
            if config.max_grad_norm > 0:
                accelerator.clip_grad_norm_(params, config.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)

            tokens_done += step_tokens
            history.append({"step": step + 1, "kind": kind, "loss": round(loss_sum, 6)})
            elapsed = elapsed_before + time.perf_counter() - t0
            if main and ((step + 1) % config.log_every == 0 or step + 1 == steps):
                rate = tokens_done / elapsed if elapsed > 0 else 0.0
                eta = elapsed / (step + 1) * (steps - step - 1)
                events.emit("step", step=step + 1, total_steps=steps, kind=kind,
                            loss=round(loss_sum, 6), lr=scheduler.get_last_lr()[0],
                            tokens=tokens_done, tokens_per_s=round(rate, 1),
                            elapsed_s=round(elapsed, 2), eta_s=round(eta, 1),
                            cpu_s=round(time.process_time() - cpu0, 2))
            saving = config.save_every and (step + 1) % config.save_every == 0
            if main and saving and step + 1 < steps:
                state = {"history": history, "tokens": tokens_done, "elapsed_s": elapsed,
                         "stream": stream.state(), "code": code.state() if code else None,
                         "data_sha256": data_sha, "settings": config.to_dict()}
                path = ckpt.save_checkpoint(config.output_dir, step + 1,
                                            accelerator.unwrap_model(model), optimizer, scheduler,
                                            state, keep=config.keep_checkpoints)
                events.emit("checkpoint", step=step + 1, path=str(path))

    # --- outputs: adapter, validation, metrics, manifest (main process only) ------------------
    elapsed = elapsed_before + time.perf_counter() - t0
    if not main:
        return TrainResult(config.output_dir / "adapter", config.output_dir / "metrics.json",
                           config.output_dir / "manifest.json", {})
    return finish_run(config, accelerator.unwrap_model(model), tokenizer, events,
                      history=history, tokens=tokens_done, elapsed=elapsed,
                      data_sha=data_sha, summary=asdict(summary), selection=selection,
                      heldout=heldout, probe=encoded[0].input_ids, steps=steps,
                      precision=precision.name)


def run_steps(config: LetiConfig, examples: int, world: int = 1) -> int:
    """The run's optimiser steps: ``epochs`` passes over the examples in feedback steps of
    ``batch_size x grad_accum x processes`` sequences, plus code steps at ``code_ratio``;
    ``max_steps`` only bounds it (a run is sized by its data, never stretched past it)."""
    per_step = config.batch_size * config.grad_accum * world
    feedback_steps = max(1, math.ceil(config.epochs * examples / per_step))
    steps = total_steps(feedback_steps, config.code_ratio)
    return min(steps, config.max_steps) if config.max_steps is not None else steps


def _sequences(config: LetiConfig, triples: list[Any],
               tokenizer: Any) -> tuple[list[Encoded], DataSummary]:
    """Token ids and labels of every feedback-side example; too-long ones are counted, and
    none left at all is an error rather than an empty adapter."""
    examples = feedback_examples(triples, config.objective, laffi_ratio=config.laffi_ratio,
                                 seed=config.seed, tokenizer=tokenizer)
    encoded = [e for e in (encode_example(x, tokenizer, mask_prompt=config.mask_prompt,
                                          max_length=config.max_length) for x in examples) if e]
    if not encoded:
        raise DatasetError(f"all {len(examples)} examples are longer than max_length="
                           f"{config.max_length} tokens: raise --max-length")
    summary = DataSummary(triples=len(triples), examples=len(encoded),
                          skipped_too_long=len(examples) - len(encoded))
    for e in encoded:
        summary.by_kind[e.kind] = summary.by_kind.get(e.kind, 0) + 1
    return encoded, summary


def _code_stream(config: LetiConfig, tokenizer: Any) -> Any:
    """Plain-code blocks; documents end with EOS so the model sees where one stops."""
    from trainer.corpus import CodeStream

    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []

    def encode(text: str) -> list[int]:
        return tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"] + eos

    return CodeStream(config.code_corpus, encode, config.code_block_size or 512,
                      seed=config.seed)


def _lora_model(model: Any, config: LetiConfig) -> Any:
    """Wrap the base in LoRA on the attention and MLP projections (no modules_to_save, no new
    tokens: servable by vLLM), or load the parent adapter to keep training it."""
    from peft import LoraConfig, PeftModel, get_peft_model

    if config.init_adapter is not None:
        from trainer.adapters import check_adapter_files

        parent = check_adapter_files(config.init_adapter)  # never continue an unservable one
        if parent.rank != config.lora_rank:
            raise ConfigError(f"the parent adapter {config.init_adapter} has rank {parent.rank}: "
                              f"pass --rank {parent.rank} to continue it")
        return PeftModel.from_pretrained(model, str(config.init_adapter), is_trainable=True)
    assert config.lora_alpha is not None  # LetiConfig.__post_init__ defaults it to 2 x rank
    lora = LoraConfig(r=config.lora_rank, lora_alpha=config.lora_alpha,
                      lora_dropout=config.lora_dropout, bias="none", task_type="CAUSAL_LM",
                      target_modules=list(config.target_modules or lora_targets(model)))
    return get_peft_model(model, lora)


def _schedule(config: LetiConfig, steps: int) -> Any:
    """Learning-rate multiplier per step: linear warm-up (``warmup_steps``, or ``warmup_ratio``
    of the run when that is longer), then constant, linear or cosine decay to zero."""
    warmup = max(config.warmup_steps, math.ceil(config.warmup_ratio * steps))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        if config.lr_schedule == "constant":
            return 1.0
        progress = (step - warmup) / max(1, steps - warmup)
        if config.lr_schedule == "linear":
            return max(0.0, 1.0 - progress)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


def default_output(root: Path) -> Path:
    """A fresh run directory under ``root`` named by the time (``leti train`` without --output)."""
    return Path(root) / time.strftime("run-%Y%m%d-%H%M%S")
