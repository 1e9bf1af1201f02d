"""Reading back one sample with everything recorded about it."""

from __future__ import annotations

from typing import Any

from service.core.errors import NotFound
from service.store.db import Store
from service.store.samples import get_sample, sample_history


def sample_detail(store: Store, sample_id: str) -> dict[str, Any]:
    """The sample's fields plus its executions and external feedback, oldest first."""
    with store.read() as session:
        sample = get_sample(session, sample_id)
        if sample is None:
            raise NotFound(f"no sample {sample_id!r}")
        executions, feedback = sample_history(session, sample_id)
    return {
        "id": sample.id, "task_id": sample.task_id, "program": sample.program,
        "origin": sample.origin, "model": sample.model, "adapter": sample.adapter,
        "sampling": sample.sampling,
        "executions": [{"id": e.id, "status": e.status, "reward": e.reward, "score": e.score,
                        "feedback": e.feedback, "duration_ms": e.duration_ms}
                       for e in executions],
        "feedback": [{"id": f.id, "label": f.label, "score": f.score, "text": f.text,
                      "raw": f.raw} for f in feedback],
    }
