"""Request and response bodies of the REST API (the OpenAPI schema at /docs comes from these).

Static bounds here keep absurd input out of the domain; the configurable limits (``LETI_MAX_*``)
are checked by the domain, which names the setting in its 413 answer. Every text field refuses
NUL characters and unpaired surrogates, which no database column can store.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints


def _storable(value: str) -> str:
    if "\x00" in value:
        raise ValueError("text must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("text must be valid Unicode (no unpaired surrogates)") from None
    return value


Text = Annotated[str, AfterValidator(_storable)]
ShortText = Annotated[str, StringConstraints(max_length=200), AfterValidator(_storable)]
LongText = Annotated[str, StringConstraints(max_length=100_000), AfterValidator(_storable)]
Statement = Annotated[str, StringConstraints(max_length=20_000), AfterValidator(_storable)]
Program = Annotated[str, StringConstraints(max_length=1_000_000), AfterValidator(_storable)]
Finite = Annotated[float, Field(allow_inf_nan=False, ge=-1e12, le=1e12)]
Id = Annotated[str, StringConstraints(min_length=1, max_length=200), AfterValidator(_storable)]
DimensionName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9 _.-]{0,63}$")]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- tasks --------------------------------------------------------------------------------------

class TaskIn(Strict):
    instruction: LongText = Field(min_length=1, description="the task in words")
    tests: list[Statement] = Field(default_factory=list, max_length=1000,
                                   description="assert statements the program must pass")
    setup: LongText = ""


class TaskOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    kind: Literal["mbpp", "humaneval", "user"]
    instruction: str
    tests: list[str]
    setup: str
    entry_point: str | None
    reference: str | None
    split: str | None


class TaskPage(BaseModel):
    items: list[TaskOut]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page")


# -- evaluate -----------------------------------------------------------------------------------

class EvaluateRequest(Strict):
    """Exactly one of: ``sample_ids``; ``programs`` + ``tests``; ``task_id`` (+ ``programs``)."""

    sample_ids: list[Id] | None = Field(default=None, max_length=1024)
    programs: list[Program] | None = Field(default=None, max_length=1024)
    tests: list[Statement] | None = Field(default=None, max_length=10_000)
    setup: LongText = ""
    instruction: LongText = Field(
        default="", description="stored with the programs; without it they are not exported as "
                                "training triples")
    task_id: Id | None = None
    timeout: float | None = Field(default=None, gt=0, le=300, description="seconds per program")


class ResultOut(BaseModel):
    sample_id: str
    task_id: str
    execution_id: str
    status: str
    passed: bool
    reward: Literal["good", "bad"]
    score: float
    feedback: str
    tests_passed: int
    tests_total: int
    duration_ms: float
    error_type: str | None


class EvaluateResponse(BaseModel):
    results: list[ResultOut]


# -- generate -----------------------------------------------------------------------------------

class SamplingIn(Strict):
    temperature: float = Field(default=0.8, ge=0, le=5)
    top_p: float = Field(default=0.95, gt=0, le=1)
    max_new_tokens: int | None = Field(
        default=None, ge=1, le=32_768, description="default: 256, or the server's limit if lower")
    seed: int | None = Field(default=None, ge=0, le=2**63 - 1)
    repetition_penalty: float = Field(
        default=1.0, gt=0, le=10, description="1: off; above 1 penalises the sample's own tokens")


class GenerateRequest(Strict):
    """A ``task_id``, or an ``instruction`` (with optional ``tests``)."""

    task_id: Id | None = None
    instruction: LongText | None = Field(default=None, min_length=1)
    tests: list[Statement] = Field(default_factory=list, max_length=1000)
    setup: LongText = ""
    n: int = Field(default=1, ge=1, le=1024)
    sampling: SamplingIn = Field(default_factory=SamplingIn)
    adapter: ShortText | None = Field(
        default=None, description="adapter name, 'base', or none for the one serving")
    condition_on_good: bool | None = Field(
        default=None,
        description="prefix 'Reward: good' (default: when an adapter produces the sample)")
    evaluate: bool = Field(default=False, description="also run every sample in the sandbox")


class SampleOut(BaseModel):
    id: str
    task_id: str
    program: str
    completion: str
    adapter: str | None
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    result: ResultOut | None = None


class GenerateResponse(BaseModel):
    task_id: str
    model: str | None
    adapter: str | None
    conditioned_on: str | None
    samples: list[SampleOut]


# -- feedback -----------------------------------------------------------------------------------

class ScoreIn(Strict):
    value: Finite
    min: Finite = 0.0
    max: Finite


class RatingIn(ScoreIn):
    weight: float = Field(default=1.0, gt=0, le=1e6, allow_inf_nan=False)


class FeedbackIn(Strict):
    """Any mix of: a thumb, a scalar score with its range, named ratings, free text."""

    sample_id: Id
    thumb: Literal["up", "down"] | None = None
    score: ScoreIn | None = None
    ratings: dict[DimensionName, RatingIn] | None = Field(default=None, max_length=64)
    text: LongText | None = None
    author: ShortText | None = None


class FeedbackOut(BaseModel):
    feedback_id: str
    sample_id: str
    label: Literal["good", "bad"] | None
    score: float | None
    text: str
    components: dict[str, float]
    triple: bool = Field(description="whether it became a training triple")


# -- samples and triples ------------------------------------------------------------------------

class ExecutionOut(BaseModel):
    id: str
    status: str
    reward: str
    score: float
    feedback: str
    duration_ms: float


class StoredFeedbackOut(BaseModel):
    id: str
    label: str | None
    score: float | None
    text: str
    raw: dict


class SampleDetail(BaseModel):
    id: str
    task_id: str
    program: str
    origin: str
    model: str | None
    adapter: str | None
    sampling: dict | None
    executions: list[ExecutionOut]
    feedback: list[StoredFeedbackOut]


class TripleOut(BaseModel):
    """The contract's fields (docs/ARCHITECTURE.md) plus ``id``, the cursor, and ``trainable``,
    the split-hygiene mark (false: a held-out task's triple, never exported)."""

    id: int
    sample_id: str
    task_id: str
    kind: str
    instruction: str
    tests: list[str]
    entry_point: str | None
    program: str
    status: str | None
    feedback: str
    reward: Literal["good", "bad"]
    score: float
    source: Literal["sandbox", "external"]
    adapter: str | None
    reference: str | None
    finish_reason: str | None = Field(description="'length': the program was cut at the token "
                                                  "limit; null for submitted programs")
    trainable: bool


class TriplePage(BaseModel):
    items: list[TripleOut]
    next_cursor: int | None


# -- the loop, training runs and adapters (docs/LOOP.md) ---------------------------------------

class Answer(BaseModel):
    """A response body that declares every key the code returns. An undeclared key would be
    dropped from the answer (never a 500 for a client); tests/api/test_loop_answers.py compares
    each answer with the dict the code built, so a key added without its field fails there."""

    model_config = ConfigDict(extra="ignore")


IsoTime = Annotated[str, Field(description="ISO 8601, as stored (UTC)")]
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


class TrainingStarted(Answer):
    """``POST /v1/train`` (202): the run started; follow it at ``GET /v1/train/{id}``."""

    id: str
    status: Literal["running"]


class TrainingRunOut(Answer):
    """``GET /v1/train/{id}``: a run as stored, with its progress from the trainer's events."""

    id: str
    status: Literal["pending", "running", "done", "failed"]
    parent_adapter: str | None
    adapter: str | None = Field(description="the adapter it produced (once done)")
    triples: tuple[int | None, int | None] = Field(
        description="the id range of the triples it was given: [from, to]")
    data: str | None = Field(description="the exported training file")
    config: dict[str, Any] = Field(description="the run's settings; `data` says what it trains "
                                               "on and why")
    metrics: dict[str, Any] | None
    error: str | None
    started_at: IsoTime
    finished_at: IsoTime | None
    step: int
    total_steps: int | None
    loss: float | None


class AdapterOut(Answer):
    name: str
    state: Literal["candidate", "serving", "retired", "rejected"]
    path: str
    base_model: str
    parent: str | None = Field(description="the adapter its training started from")
    metrics: dict[str, Any] | None = Field(description="training and gate figures")
    training_run: str | None
    loaded: bool = Field(description="loaded in the serving generator now")
    created_at: IsoTime


class AdapterList(Answer):
    """``GET /v1/adapters``: every adapter the loop made, newest first."""

    alias: str | None = Field(description="the name that always means the serving adapter")
    serving: str | None
    items: list[AdapterOut]


class Readiness(BaseModel):
    status: Literal["ready", "not ready"]
    checks: dict[str, str] = Field(description="store, sandbox, generator: 'ok', 'disabled' "
                                               "or why not")
    down: list[str]


class Problem(BaseModel):
    """Every error answer: what went wrong, in words (a list of problems for a 422)."""

    detail: str | list[dict[str, Any]]
    component: str | None = Field(default=None,
                                  description="on a 503: store, sandbox or generator")


_WHY = {400: "the body is not valid JSON text", 401: "missing or wrong X-API-Key",
        404: "an id that does not exist", 409: "conflicts with work in progress (e.g. a run)",
        413: "over a limit (the message names the setting)", 422: "invalid request",
        503: "a backend is down (named in 'component')"}


def problems(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for the error answers a route can give."""
    return {code: {"model": Problem, "description": _WHY[code]} for code in codes}
