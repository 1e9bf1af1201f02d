"""What every generator takes and returns, and the errors the API maps to status codes.

Kept free of heavy imports so the API and the CLI can type against them without torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

FinishReason = Literal["stop", "length"]
# Rows the embedded backend decodes together by default: the best width measured on the loop's
# workload (docs/BENCHMARKS.md); settings and experiment configs take it from here.
DEFAULT_ROWS = 64


class GenerationError(RuntimeError):
    """A generation failed for a reason the caller cannot fix by changing the request."""


class BackendUnavailable(GenerationError):
    """The model server is down, too slow or failing after bounded retries: the API answers 503."""


class RequestRejected(GenerationError, ValueError):
    """The model server refused the request itself (a prompt over the context, a parameter it
    does not accept): the client must change it, so the API answers 4xx, not 503."""


class AdapterError(ValueError):
    """An adapter is unknown, retiring, already loaded, or not plain LoRA: the API answers 4xx."""


class AdapterNotFound(AdapterError):
    """No adapter of that name is being served (404)."""


@dataclass(frozen=True)
class SamplingParams:
    """How to sample. ``temperature=0`` (or below 1e-5, as in vLLM) is greedy. ``seed`` makes a
    request repeatable: sample ``j`` of prompt ``i`` draws from its own random stream seeded by
    ``(seed, i, j)``, so the same request gives the same samples (and the other requests in a
    batch consume none of its randomness; only float rounding of a different batch shape can flip
    a near-tied draw).

    ``repetition_penalty`` (1: off) divides the positive logits and multiplies the negative ones
    of every token the sample has already generated (the prompt's tokens are not penalised), so
    a sample stuck repeating itself is pushed out of the loop; vLLM takes the same name."""

    n: int = 1
    temperature: float = 0.8
    top_p: float = 0.95
    max_new_tokens: int = 256
    stop: tuple[str, ...] = ()
    seed: int | None = None
    repetition_penalty: float = 1.0

    def __post_init__(self) -> None:
        if isinstance(self.stop, str):
            object.__setattr__(self, "stop", (self.stop,))
        elif not isinstance(self.stop, tuple):
            object.__setattr__(self, "stop", tuple(self.stop))
        if not isinstance(self.n, int) or self.n < 1:
            raise ValueError(f"n must be a positive integer, got {self.n!r}")
        if not math.isfinite(self.temperature) or self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature!r}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p!r}")
        if not isinstance(self.max_new_tokens, int) or self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be a positive integer, got {self.max_new_tokens!r}")
        if any(not isinstance(s, str) or not s for s in self.stop):
            raise ValueError("stop sequences must be non-empty strings")
        if self.seed is not None and (not isinstance(self.seed, int) or self.seed < 0):
            raise ValueError(f"seed must be a non-negative integer, got {self.seed!r}")
        if not math.isfinite(self.repetition_penalty) or not 0 < self.repetition_penalty <= 10:
            raise ValueError(f"repetition_penalty must be in (0, 10], got {self.repetition_penalty!r}")


@dataclass(frozen=True)
class Completion:
    """One sampled continuation. ``text`` excludes the stop sequence or EOS that ended it;
    ``completion_tokens`` counts every token generated, that final one included (as vLLM does)."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: FinishReason
    adapter: str | None = None  # the concrete (versioned) adapter that produced it; None = base

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


# What ``Generator.stream`` yields: ``(choice index, text)`` as text arrives, then the finished
# completions, as ``generate`` returns them.
StreamEvent = tuple[int, str] | list[list[Completion]]


@dataclass(frozen=True)
class AdapterInfo:
    """An adapter the backend serves, by its concrete name."""

    name: str
    path: str
    in_flight: int = 0
    retiring: bool = False


@dataclass
class ServingState:
    """Which adapter answers requests that name none (the alias), and what is loaded."""

    alias: str
    serving: str | None
    adapters: list[AdapterInfo] = field(default_factory=list)
