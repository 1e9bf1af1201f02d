"""``/v1/loop``: the loop's state, counts, last round, gate decisions and settings
(docs/LOOP.md)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from service.api.schemas.fields import Answer, IsoTime

DecisionKind = Literal["promote", "reject", "rollback"]


class TrainerOut(Answer):
    """The newest training run this process started, as its trainer subprocess reports it."""

    id: str
    running: bool
    pid: int | None
    last_event: dict[str, Any] | None = Field(
        description="the trainer's newest JSON-line event (start, step, checkpoint, done, error)")
    error: str | None


class LoopCounts(Answer):
    samples: int
    triples: int
    new_triples: int = Field(description="trainable triples no finished run has trained on")
    held_out_triples: int
    training_runs: int
    failed_runs: int
    adapters: int


class RoundOut(Answer):
    """The last round this process collected."""

    round: int
    problems: list[str]
    samples: int
    passed: int
    truncated: int = Field(description="programs cut at the token limit")
    adapter: str | None = Field(description="the adapter that sampled (null: the base model)")


class DecisionOut(Answer):
    """A recorded promotion-gate decision (also the answer of promote and rollback)."""

    id: str
    adapter: str
    previous: str | None
    decision: DecisionKind
    reason: str
    metrics: dict[str, Any] | None = Field(description="the gate's figures and settings")
    created_at: IsoTime


class PassAt1Point(Answer):
    adapter: str
    decision: DecisionKind
    pass_at_1: float = Field(description="the candidate's pass@1 on the gate's problems")
    serving_pass_at_1: float | None
    at: IsoTime


class LoopSettingsOut(Answer):
    """The ``LETI_LOOP_*``, ``LETI_TRAIN_*`` and ``LETI_GATE_*`` settings the loop runs with."""

    loop_problems_per_round: int
    loop_pool_size: int
    loop_samples_per_problem: int
    loop_temperature: float
    train_min_new_triples: int
    train_interval_s: float
    train_selection: Literal["accumulate", "window"]
    train_epochs: float
    train_steps: int
    train_code_ratio: float
    train_init: Literal["base", "serving"]
    gate_problems: int
    gate_margin: float
    gate_temperature: float


class LoopStatus(Answer):
    """``GET /v1/loop``, and the answer of ``POST /v1/loop/start`` and ``/stop``."""

    state: Literal["running", "stopped"]
    phase: Literal["collecting", "idle", "paused after an error"] = Field(
        description="paused: the loop retries after 5 s; `last_error` says why")
    round: int
    task_cursor: int
    task_source: Literal["mbpp", "builtin"] | None = Field(
        description="null until the loop (or a gate) first needs problems")
    enabled: bool = Field(description="LETI_LOOP_ENABLED")
    serving_adapter: str | None
    training: TrainerOut | None
    counts: LoopCounts
    last_round: RoundOut | None
    last_decisions: list[DecisionOut] = Field(description="newest first, at most 10")
    pass_at_1_history: list[PassAt1Point] = Field(description="every gate, oldest first")
    settings: LoopSettingsOut
    last_error: str | None
