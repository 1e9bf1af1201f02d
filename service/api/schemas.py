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
