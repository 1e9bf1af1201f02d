"""Text -> tensors, and which kind of batch each optimiser step takes.

The prompt and the completion are tokenised apart and joined, exactly as at sampling time (the
generator encodes the prompt, the model then writes the completion's tokens), so the boundary
used for masking is the boundary the model sees. ``step_kind`` interleaves plain-code steps with
feedback steps at a fixed ratio, deterministically, so a resumed run picks the same kinds.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Literal

from trainer.data import Example
from trainer.prompts import encode_kwargs

IGNORE_INDEX = -100  # torch's cross-entropy ignore_index: no loss on these positions
StepKind = Literal["feedback", "code"]


@dataclass(frozen=True)
class Encoded:
    """One tokenised sequence with its loss labels (``IGNORE_INDEX`` where masked)."""

    input_ids: tuple[int, ...]
    labels: tuple[int, ...]
    kind: str

    @property
    def trained_tokens(self) -> int:
        return sum(1 for x in self.labels if x != IGNORE_INDEX)


def encode_example(example: Example, tokenizer: Any, *, mask_prompt: bool,
                   max_length: int) -> Encoded | None:
    """Token ids and labels for one example; None when it exceeds ``max_length``."""
    prompt = tokenizer(example.prompt, **encode_kwargs(tokenizer))["input_ids"]
    completion = tokenizer(example.completion, add_special_tokens=False)["input_ids"]
    ids = list(prompt) + list(completion)
    if len(ids) > max_length or not completion:
        return None
    labels = ([IGNORE_INDEX] * len(prompt) if mask_prompt else list(prompt)) + list(completion)
    return Encoded(tuple(ids), tuple(labels), example.kind)


def encode_code(block: Sequence[int]) -> Encoded:
    """A plain-code block: the loss covers every token (continued pre-training)."""
    return Encoded(tuple(block), tuple(block), "code")


def collate(batch: Sequence[Encoded], pad_id: int) -> dict[str, Any]:
    """Right-pad to the longest sequence; padding gets no attention and no loss."""
    import torch

    width = max(len(e.input_ids) for e in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), width), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for row, e in enumerate(batch):
        n = len(e.input_ids)
        ids[row, :n] = torch.tensor(e.input_ids)
        labels[row, :n] = torch.tensor(e.labels)
        mask[row, :n] = 1
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}


def _code_fraction(ratio: float) -> Fraction:
    r = Fraction(ratio).limit_denominator(1000)
    return r / (1 + r)


def step_kind(step: int, code_ratio: float) -> StepKind:
    """Whether optimiser step ``step`` (0-based) trains on code or feedback: ``code_ratio`` code
    steps per feedback step, spread evenly (1.0 alternates F, C, F, C, ...)."""
    if code_ratio <= 0:
        return "feedback"
    f = _code_fraction(code_ratio)
    return "code" if math.floor((step + 1) * f) > math.floor(step * f) else "feedback"


def total_steps(feedback_steps: int, code_ratio: float) -> int:
    """Optimiser steps needed so that ``feedback_steps`` of them are feedback steps."""
    if code_ratio <= 0:
        return feedback_steps
    f = _code_fraction(code_ratio)
    steps = math.ceil(feedback_steps / (1 - f))
    while steps - math.floor(steps * f) < feedback_steps:  # guard the rounding
        steps += 1
    while steps > 1 and (steps - 1) - math.floor((steps - 1) * f) >= feedback_steps:
        steps -= 1
    return steps


class ExampleStream:
    """Endless seeded passes over the encoded examples; each pass is a fresh permutation.

    In data-parallel runs every process draws the same global batch and keeps its own slice.
    """

    def __init__(self, examples: Sequence[Encoded], *, seed: int = 0, rank: int = 0,
                 world_size: int = 1) -> None:
        if not examples:
            raise ValueError("no examples to stream")
        self.examples = list(examples)
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.epoch, self.cursor = 0, 0
        self._order = self._shuffled(0)

    def _shuffled(self, epoch: int) -> list[int]:
        order = list(range(len(self.examples)))
        random.Random(self.seed * 7_919 + epoch).shuffle(order)
        return order

    def next_batch(self, batch_size: int) -> list[Encoded]:
        """This process's share of the next global batch of ``batch_size * world_size``."""
        picked: list[int] = []
        while len(picked) < batch_size * self.world_size:
            if self.cursor >= len(self._order):
                self.epoch, self.cursor = self.epoch + 1, 0
                self._order = self._shuffled(self.epoch)
            picked.append(self._order[self.cursor])
            self.cursor += 1
        return [self.examples[i] for i in picked[self.rank::self.world_size]]

    def state(self) -> dict[str, int]:
        return {"epoch": self.epoch, "cursor": self.cursor}

    def load_state(self, state: dict[str, int]) -> None:
        self.epoch, self.cursor = int(state["epoch"]), int(state["cursor"])
        self._order = self._shuffled(self.epoch)
