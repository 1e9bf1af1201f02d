"""The study's records of a round, an ablation and the marker check, built from what the loop's
round, the trainer and the evaluations returned."""

from __future__ import annotations

from typing import Any

from service.experiment.config import Ablation, TrainingSection
from service.experiment.results import (
    AblationRecord,
    EvaluationRecord,
    GateRecord,
    RoundRecord,
    TrainingRecord,
)
from service.loop.rounds import RoundOutcome

# What the round record keeps of the gate's metrics (its per-problem table stays in the store).
GATE_METRICS = ("candidate_pass_at_1", "serving_pass_at_1", "candidate_solved", "serving_solved",
                "tasks", "difference", "ci_low", "ci_high", "warning", "gained", "lost")


def round_record(outcome: RoundOutcome, *, pool_size: int, sampled_from: str | None,
                 serving_after: str | None, training: TrainingSection,
                 evaluation_s: dict[str, float]) -> RoundRecord:
    """A trained and gated round: what was sampled, the data, the training and the gate."""
    collected, trained, prepared = outcome.collected, outcome.trained, outcome.prepared
    assert trained is not None and prepared is not None, "the round was not trained"
    decision = trained.decision or {}
    metrics = decision.get("metrics") or {}
    return RoundRecord(
        round=collected.round, problems=list(collected.problems), pool=pool_size,
        samples=collected.samples, passed=collected.passed,
        pool_pass_rate=collected.pass_rate, truncated=collected.truncated,
        statuses=collected.statuses, error_types=collected.error_types,
        adapter_sampled=sampled_from, candidate=trained.candidate,
        adapter_dir=str(trained.adapter_dir),
        data=prepared.command[prepared.command.index("--data") + 1],
        selection=trained.data.get("selection"), trained_on=trained.data.get("trained_on"),
        training=TrainingRecord.from_json({**trained.training, "error": None,
                                           "step_bound": training.step_bound(),
                                           "init": training.init}),
        gate=GateRecord.from_json({"decision": decision.get("decision"),
                                   "reason": decision.get("reason"),
                                   **{k: metrics.get(k) for k in GATE_METRICS}}),
        serving_after=serving_after,
        timings_s={**collected.timings_s, **trained.timings_s, **evaluation_s})


def ablation_record(ablation: Ablation, *, code_ratio: float, feedback_steps: int, steps: int,
                    evaluation: EvaluationRecord, training: dict[str, Any],
                    timings_s: dict[str, float],
                    references: dict[str, Any] | None = None) -> AblationRecord:
    """An ablation trained on round 1's data, compared with round 1's candidate; the
    references ceiling (``references``: what its data held) is compared with the base model."""
    return AblationRecord(
        name=ablation.name, objective=ablation.objective, code_ratio=code_ratio,
        feedback_steps=feedback_steps, steps=steps, data_round=1, evaluation=evaluation.key,
        compare_to="base/mbpp" if ablation.data == "references" else "leti-r1/mbpp",
        training=TrainingRecord.from_json({**training, "steps": steps}),
        timings_s=timings_s, references=references)


def marker_record(evaluation: EvaluationRecord, round_number: int) -> AblationRecord:
    """The marker check: the promoted adapter sampled on "bad", compared with it on "good"."""
    return AblationRecord(
        name="marker", objective=None, marker="bad", evaluation=evaluation.key,
        compare_to=f"leti-r{round_number}/mbpp", data_round=round_number,
        training=TrainingRecord.from_json({}), timings_s=evaluation.timings_s)
