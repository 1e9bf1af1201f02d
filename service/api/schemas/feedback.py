"""``/v1/feedback``: a thumb, a score, ratings or words on a sample, and what they became."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from service.api.schemas.fields import DimensionName, Finite, Id, LongText, ShortText, Strict


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
