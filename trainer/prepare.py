"""What the training loop needs before its first step: the run's data, and the model that learns.

``prepare_data`` takes the triples the reader kept through selection and the LaFFi hold-out to
token ids and the streams the loop draws its batches from; ``lora_model`` and ``lr_schedule``
give the LoRA model and its learning rate per step. ``trainer.train`` calls them in the order
that makes a seed's run repeat bit for bit.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from trainer.batches import Encoded, ExampleStream, encode_example
from trainer.config import LetiConfig
from trainer.data import DatasetError, ReadReport, Triple, feedback_examples
from trainer.outputs import lora_targets, prepare_selection
from trainer.train_config import ConfigError


@dataclass
class DataSummary:
    """What went into training and what was left out, for the metrics file."""

    triples: int = 0
    examples: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)
    skipped_too_long: int = 0
    heldout_triples: int = 0
    read: int = 0  # triples in the file
    truncated_policy: str = "drop"
    dropped: dict[str, int] = field(default_factory=dict)  # left out when read, by reason
    marked: int = 0  # truncated failures kept with a note appended to their feedback


@dataclass
class RunData:
    """The run's data once chosen and tokenised: what the loop batches, and what it reports."""

    encoded: list[Encoded]  # every feedback-side example that fits max_length
    summary: DataSummary
    stream: ExampleStream  # this process's feedback batches
    code: Any  # trainer.corpus.CodeStream of plain code, or None when code_ratio is 0
    selection: dict[str, Any] | None  # the selection report, when selection ran
    heldout: list[Triple]  # LaFFi's held-out triples, measured after training


def prepare_data(config: LetiConfig, triples: list[Triple], read: ReadReport, model: Any,
                 tokenizer: Any, *, rank: int, world: int) -> RunData:
    """Selection (on the base model's embeddings when asked), the LaFFi hold-out, token ids and
    this process's streams; ``read`` says what the reader left out, for the metrics."""
    embed = None
    if config.selection.active and config.selection.cluster_by == "embeddings":
        from trainer.selection import model_embedder

        embed = model_embedder(model, tokenizer)
    triples, selection = prepare_selection(triples, config, embed=embed)
    heldout: list[Triple] = []
    if config.laffi_ratio > 0 and config.laffi_holdout > 0:
        from trainer.laffi import split_by_task

        triples, heldout = split_by_task(triples, config.laffi_holdout, seed=config.seed)
        heldout = heldout[:config.laffi_eval_max]

    # the prompt text comes from trainer.prompts, as at sampling time
    encoded, summary = encode_examples(config, triples, tokenizer)
    summary.heldout_triples = len(heldout)
    # what the reader left out of the file (failed programs cut at the token limit, by policy)
    summary.read, summary.truncated_policy = read.read, read.policy
    summary.dropped, summary.marked = dict(read.dropped), read.marked
    stream = ExampleStream(encoded, seed=config.seed, rank=rank, world_size=world)
    code = code_stream(config, tokenizer) if config.code_ratio > 0 else None
    return RunData(encoded, summary, stream, code, selection, heldout)


def encode_examples(config: LetiConfig, triples: list[Triple],
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


def code_stream(config: LetiConfig, tokenizer: Any) -> Any:
    """Plain-code blocks; documents end with EOS so the model sees where one stops."""
    from trainer.corpus import CodeStream

    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []

    def encode(text: str) -> list[int]:
        return tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"] + eos

    return CodeStream(config.code_corpus, encode, config.code_block_size or 512,
                      seed=config.seed)


def lora_model(model: Any, config: LetiConfig) -> Any:
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


def lr_schedule(config: LetiConfig, steps: int) -> Callable[[int], float]:
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
