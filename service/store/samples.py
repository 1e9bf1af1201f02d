"""Samples and what was learned about them: executions, external feedback, and their triples.

Every write that yields feedback also writes its training triple in the same transaction, so
the triples table is never behind the rows it summarises; each triple is marked trainable or
not there, by the one split-hygiene rule (``service.store.tasks.may_train_on``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import exists, func, select
from sqlalchemy.orm import Session

from service.store.models import ExecutionRow, FeedbackRow, Label, SampleRow, TaskRow, TripleRow
from service.store.tasks import may_train_on


@dataclass(frozen=True)
class NewSample:
    """What a caller knows about a program before it is stored."""

    task_id: str
    program: str
    origin: str  # generated | submitted
    completion: str | None = None
    prompt: str | None = None
    model: str | None = None
    adapter: str | None = None
    sampling: dict[str, Any] | None = None
    conditioned_on: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    finish_reason: str | None = None
    id: str | None = None  # None: a fresh id; given when the caller must name it in advance


@dataclass(frozen=True)
class ExecutionRecord:
    """A sandbox result ready to store (built by the evaluation domain from an Outcome)."""

    status: str
    feedback: str
    reward: Label
    score: float
    tests_passed: int
    tests_total: int
    duration_ms: float
    outcome: dict[str, Any]
    backend: str


@dataclass(frozen=True)
class FeedbackRecord:
    """External feedback as given (``raw``) and normalised (label, score, text)."""

    raw: dict[str, Any]
    label: Label | None
    score: float | None
    text: str
    author: str | None = None
    components: dict[str, float] = field(default_factory=dict)


def add_samples(session: Session, samples: list[NewSample]) -> list[SampleRow]:
    rows = [SampleRow(**{k: v for k, v in sample.__dict__.items() if k != "id" or v is not None})
            for sample in samples]
    session.add_all(rows)
    session.flush()
    return rows


def get_sample(session: Session, sample_id: str) -> SampleRow | None:
    return session.get(SampleRow, sample_id)


def get_samples(session: Session, sample_ids: list[str]) -> dict[str, SampleRow]:
    rows = session.scalars(select(SampleRow).where(SampleRow.id.in_(sample_ids)))
    return {row.id: row for row in rows}


def unexecuted_samples(session: Session, task_id: str, limit: int) -> list[SampleRow]:
    """A task's samples that have never run, oldest first."""
    ran = exists().where(ExecutionRow.sample_id == SampleRow.id)
    query = (select(SampleRow).where(SampleRow.task_id == task_id, ~ran)
             .order_by(SampleRow.created_at, SampleRow.id).limit(limit))
    return list(session.scalars(query))


def add_execution(session: Session, sample_id: str, record: ExecutionRecord) -> ExecutionRow:
    """Store one sandbox run and its triple."""
    row = ExecutionRow(sample_id=sample_id, status=record.status, feedback=record.feedback,
                       reward=record.reward, score=record.score,
                       tests_passed=record.tests_passed, tests_total=record.tests_total,
                       duration_ms=record.duration_ms, outcome=record.outcome,
                       backend=record.backend)
    session.add(row)
    session.flush()
    session.add(TripleRow(sample_id=sample_id, source="sandbox", execution_id=row.id,
                          status=record.status, feedback=record.feedback,
                          reward=record.reward, score=record.score,
                          trainable=_trainable(session, sample_id)))
    return row


def _trainable(session: Session, sample_id: str) -> bool:
    """The split-hygiene verdict for a new triple of this sample (its task decides)."""
    sample = session.get(SampleRow, sample_id)
    if sample is None:
        raise LookupError(f"no sample {sample_id!r} to attach a triple to")
    return may_train_on(task_of(session, sample))


def latest_execution(session: Session, sample_id: str) -> ExecutionRow | None:
    query = (select(ExecutionRow).where(ExecutionRow.sample_id == sample_id)
             .order_by(ExecutionRow.created_at.desc(), ExecutionRow.id.desc()).limit(1))
    return session.scalars(query).first()


def add_feedback(session: Session, sample_id: str, record: FeedbackRecord) -> tuple[FeedbackRow,
                                                                                  bool]:
    """Store external feedback; with a label it also becomes a triple (returns whether)."""
    row = FeedbackRow(sample_id=sample_id, raw=record.raw, label=record.label,
                      score=record.score, text=record.text, author=record.author,
                      components=record.components)
    session.add(row)
    session.flush()
    if record.label is None or record.score is None:
        return row, False
    ran = latest_execution(session, sample_id)
    session.add(TripleRow(sample_id=sample_id, source="external", feedback_id=row.id,
                          status=ran.status if ran else None, feedback=record.text,
                          reward=record.label, score=record.score,
                          trainable=_trainable(session, sample_id)))
    return row, True


def sample_history(session: Session, sample_id: str) -> tuple[list[ExecutionRow],
                                                              list[FeedbackRow]]:
    executions = session.scalars(select(ExecutionRow).where(ExecutionRow.sample_id == sample_id)
                                 .order_by(ExecutionRow.created_at))
    feedback = session.scalars(select(FeedbackRow).where(FeedbackRow.sample_id == sample_id)
                               .order_by(FeedbackRow.created_at))
    return list(executions), list(feedback)


def task_of(session: Session, sample: SampleRow) -> TaskRow:
    task = session.get(TaskRow, sample.task_id)
    if task is None:  # the foreign key makes this impossible short of manual edits
        raise LookupError(f"sample {sample.id} names a missing task {sample.task_id}")
    return task


def count_samples(session: Session) -> int:
    """How many programs were stored (generated or submitted), for the loop's counters."""
    return session.scalar(select(func.count()).select_from(SampleRow)) or 0


def recent_failures(session: Session, limit: int) -> list[tuple[ExecutionRow, SampleRow]]:
    """The newest executions that earned the "bad" reward, with their samples (the
    dashboard's failures panel shows LETI's feedback on them)."""
    query = (select(ExecutionRow, SampleRow).join(SampleRow, SampleRow.id == ExecutionRow.sample_id)
             .where(ExecutionRow.reward == "bad")
             .order_by(ExecutionRow.created_at.desc()).limit(limit))
    return [(e, s) for e, s in session.execute(query).all()]
