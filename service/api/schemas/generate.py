"""``/v1/generate``: how to sample a task, and the stored samples (with their results)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from service.api.schemas.evaluate import ResultOut
from service.api.schemas.fields import Id, LongText, ShortText, Statement, Strict


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
