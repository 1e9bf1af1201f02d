"""Typed settings for a training run: one dataclass per method, every field with its help text.

``LetiConfig`` adds to what any LoRA run needs (``trainer.train_config.TrainConfig``: model,
adapter, optimiser, loop, checkpoints) the LETI objective and its ablations, the code-corpus
regulariser, the LaFFi mix and the selection of the triples. Like its base, it fills derived
defaults and refuses impossible values in ``__post_init__``, with the fix in the message.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from trainer.data import TRUNCATED_POLICIES
from trainer.selection import SelectionConfig
from trainer.train_config import ConfigError, TrainConfig

Objective = Literal["leti", "binary", "sft", "laffi"]
OBJECTIVES: tuple[str, ...] = ("leti", "binary", "sft", "laffi")


@dataclass
class LetiConfig(TrainConfig):
    """LETI feedback-conditioned fine-tuning (the default), its ablations, and the LaFFi mix."""

    objective: Objective = field(
        default="leti",
        metadata={
            "help": "leti: reward marker + feedback (bad samples) + instruction + program; "
            "binary: markers only, no feedback text; sft: reference solutions, no marker; "
            "laffi: predict feedback."
        },
    )
    mask_prompt: bool = field(
        default=False,
        metadata={
            "help": "Put the loss on the completion only (LETI's default is the whole sequence)."
        },
    )
    code_ratio: float = field(
        default=1.0,
        metadata={
            "help": "Plain-code optimiser steps per feedback step (LETI's continued "
            "pre-training regulariser); 0 disables."
        },
    )
    code_corpus: str = field(
        default="stdlib",
        metadata={
            "help": "'stdlib' (the running interpreter's own library sources), a "
            "directory of .py files, or a JSONL file with a 'text' or 'code' "
            "field."
        },
    )
    code_block_size: int | None = field(
        default=None,
        metadata={"help": "Tokens per plain-code sequence (default: min(max_length, 512))."},
    )
    truncated: str | None = field(
        default=None,
        metadata={
            "help": "Failed programs cut at the token limit (finish_reason 'length'): 'drop' "
            "them, 'mark' them (a line appended to their feedback) or 'keep' them; None: "
            "$LETI_TRAIN_TRUNCATED, else 'drop'."
        },
    )
    laffi_ratio: float = field(
        default=0.0,
        metadata={
            "help": "Fraction of feedback examples that are LaFFi feedback-prediction "
            "examples, in [0, 1] (objective 'laffi' sets 1)."
        },
    )
    laffi_holdout: float = field(
        default=0.1,
        metadata={
            "help": "Fraction of tasks held out to measure feedback-prediction "
            "accuracy when LaFFi is on (0 skips the measurement)."
        },
    )
    laffi_eval_max: int = field(
        default=64, metadata={"help": "At most this many held-out triples are evaluated."}
    )
    selection: SelectionConfig = field(
        default_factory=SelectionConfig,
        metadata={
            "help": "Quality threshold and diverse subset of the triples "
            "(off by default: every triple is used)."
        },
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.objective not in OBJECTIVES:
            raise ConfigError(f"objective={self.objective!r}: choose one of {OBJECTIVES}")
        if self.objective == "laffi":
            self.laffi_ratio = 1.0
        if not 0.0 <= self.laffi_ratio <= 1.0:
            raise ConfigError("laffi_ratio must be in [0, 1] (0: pure LETI, 1: pure LaFFi)")
        if self.laffi_ratio > 0 and self.objective == "sft":
            raise ConfigError(
                "LaFFi needs feedback: use objective 'leti' or 'binary' with "
                "laffi_ratio, or objective 'laffi'"
            )
        if self.code_ratio < 0:
            raise ConfigError("code_ratio must be >= 0 (0 disables the code corpus)")
        if not 0.0 <= self.laffi_holdout < 1.0:
            raise ConfigError("laffi_holdout must be in [0, 1)")
        if self.truncated is not None and self.truncated not in TRUNCATED_POLICIES:
            raise ConfigError(f"truncated={self.truncated!r}: choose one of "
                              f"{', '.join(TRUNCATED_POLICIES)}")
        if self.code_block_size is None:
            self.code_block_size = min(self.max_length, 512)
        if self.code_block_size < 8:
            raise ConfigError("code_block_size must be at least 8 tokens")
