"""Heterogeneous feedback -> one record: a good/bad label, a score in [0, 1], and text.

After "A Framework for Fine-Tuning LLMs using Heterogeneous Feedback" (Aponte et al., 2024):
binary, scalar and multi-dimensional signals are mapped onto one scale and unified, so every
kind of feedback can train the same model. Here each signal becomes a number in [0, 1]:

* thumbs up / down -> 1 / 0;
* a scalar score on [low, high] -> (value - low) / (high - low);
* multi-dimensional ratings -> each dimension min-max normalised on its own range, then their
  weighted mean (equal weights unless given);

the record's score is the mean of the signals present, and the label is "good" when that score
reaches the threshold (``LETI_FEEDBACK_THRESHOLD``, 0.5). Free text is kept as the record's text,
followed by a one-line summary of the numeric signals so a "bad" triple always says why. Text
alone carries no label: it takes the label of the sample's sandbox run when there is one (see
``submit``), and is otherwise stored but not exported as a triple.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from service.core.errors import InvalidRequest, NotFound
from service.store.db import Store
from service.store.models import Label
from service.store.samples import FeedbackRecord, add_feedback, get_sample, latest_execution

Thumb = Literal["up", "down"]


class FeedbackError(InvalidRequest):
    """The feedback is inconsistent (a value outside its range, an empty range, nothing given)."""


@dataclass(frozen=True)
class Scaled:
    """A number on a stated range, e.g. 7 on [1, 10]; ``weight`` matters only in ratings."""

    value: float
    low: float
    high: float
    weight: float = 1.0

    def normalised(self, what: str) -> float:
        for name in ("value", "low", "high", "weight"):
            if not math.isfinite(getattr(self, name)):
                raise FeedbackError(f"{what}: '{name}' must be a finite number")
        if self.high <= self.low:
            raise FeedbackError(f"{what}: the range [{self.low:g}, {self.high:g}] is empty "
                                "('high' must be greater than 'low')")
        if not math.isfinite(self.high - self.low):
            raise FeedbackError(f"{what}: the range is too wide")
        if not self.low <= self.value <= self.high:
            raise FeedbackError(f"{what}: {self.value:g} is outside its range "
                                f"[{self.low:g}, {self.high:g}]")
        if not 0 < self.weight <= 1e6:
            raise FeedbackError(f"{what}: 'weight' must be in (0, 1e6]")
        return (self.value - self.low) / (self.high - self.low)

    def describe(self) -> str:
        if self.low == 0:
            return f"{self.value:g}/{self.high:g}"
        return f"{self.value:g} on [{self.low:g}, {self.high:g}]"


@dataclass(frozen=True)
class Feedback:
    """What a client may say about a sample, in any mix."""

    thumb: Thumb | None = None
    score: Scaled | None = None
    ratings: dict[str, Scaled] = field(default_factory=dict)
    text: str | None = None


@dataclass(frozen=True)
class Normalised:
    """The unified record; ``label``/``score`` are None for text-only feedback."""

    label: Label | None
    score: float | None
    text: str
    components: dict[str, float]


def _summary(feedback: Feedback, label: str | None, has_text: bool) -> str:
    parts = []
    if feedback.score is not None:
        parts.append(f"Score: {feedback.score.describe()}.")
    if feedback.ratings:
        ratings = ", ".join(f"{name} {scaled.describe()}"
                            for name, scaled in feedback.ratings.items())
        parts.append(f"Ratings: {ratings}.")
    if not parts and not has_text and feedback.thumb is not None:
        parts.append(f"A reviewer rated this program {label}.")
    return " ".join(parts)


def normalise(feedback: Feedback, threshold: float = 0.5) -> Normalised:
    """The one record for ``feedback``; ``FeedbackError`` if it is empty or inconsistent."""
    components: dict[str, float] = {}
    if feedback.thumb is not None:
        components["thumb"] = 1.0 if feedback.thumb == "up" else 0.0
    if feedback.score is not None:
        components["score"] = feedback.score.normalised("score")
    if feedback.ratings:
        values = {name: scaled.normalised(f"ratings.{name}")
                  for name, scaled in feedback.ratings.items()}
        weights = {name: feedback.ratings[name].weight for name in values}
        components["ratings"] = sum(values[n] * weights[n] for n in values) / sum(weights.values())
    text = (feedback.text or "").strip()
    if not components and not text:
        raise FeedbackError("feedback needs at least one of: thumb, score, ratings, text")
    score = min(1.0, max(0.0, sum(components.values()) / len(components))) if components \
        else None
    label: Label | None = None if score is None else ("good" if score >= threshold else "bad")
    summary = _summary(feedback, label, bool(text))
    full_text = "\n".join(part for part in (text, summary) if part)
    return Normalised(label=label, score=score, text=full_text, components=components)


@dataclass(frozen=True)
class Recorded:
    """What the store kept: the feedback row's id, the normalised record, whether it is a triple."""

    feedback_id: str
    sample_id: str
    record: Normalised
    triple: bool


def submit(store: Store, sample_id: str, feedback: Feedback, raw: dict[str, Any],
           author: str | None, threshold: float) -> Recorded:
    """Store feedback on a sample as given and normalised (blocking: call from a thread).

    Text-only feedback takes the label and score of the sample's latest sandbox run, when it
    has one, so a reviewer's comment on a failing program becomes a "bad" triple with that text.
    """
    record = normalise(feedback, threshold)
    with store.write() as session:
        if get_sample(session, sample_id) is None:
            raise NotFound(f"no sample {sample_id!r}")
        if record.label is None:
            ran = latest_execution(session, sample_id)
            if ran is not None:
                label: Label = "good" if ran.reward == "good" else "bad"
                record = replace(record, label=label, score=ran.score,
                                 components={"sandbox": ran.score})
        row, triple = add_feedback(session, sample_id, FeedbackRecord(
            raw=raw, label=record.label, score=record.score, text=record.text, author=author,
            components=record.components))
    return Recorded(row.id, sample_id, record, triple)
