"""``POST /v1/feedback``: feedback on a sample from outside, in any mix of kinds."""

from __future__ import annotations

import anyio.to_thread
from fastapi import APIRouter

from service.api.deps import ApiKey, SettingsDep, StoreDep
from service.api.schemas import problems, FeedbackIn, FeedbackOut
from service.core.feedback import Feedback, Scaled, submit

router = APIRouter(prefix="/v1", tags=["feedback"])


def to_domain(body: FeedbackIn) -> Feedback:
    score = None if body.score is None else Scaled(body.score.value, body.score.min,
                                                   body.score.max)
    ratings = {name: Scaled(r.value, r.min, r.max, r.weight)
               for name, r in (body.ratings or {}).items()}
    return Feedback(thumb=body.thumb, score=score, ratings=ratings, text=body.text)


@router.post("/feedback", response_model=FeedbackOut, status_code=201,
             dependencies=[ApiKey], responses=problems(400, 401, 404, 413, 422, 503))
async def post_feedback(body: FeedbackIn, store: StoreDep, settings: SettingsDep) -> FeedbackOut:
    """Stored as given and normalised into a label, a score in [0, 1] and text (docs/API.md)."""
    raw = body.model_dump(mode="json", exclude_unset=True)  # what the client sent
    recorded = await anyio.to_thread.run_sync(submit, store, body.sample_id, to_domain(body),
                                              raw, body.author, settings.feedback_threshold)
    record = recorded.record
    return FeedbackOut(feedback_id=recorded.feedback_id, sample_id=recorded.sample_id,
                       label=record.label, score=record.score, text=record.text,
                       components=record.components, triple=recorded.triple)
