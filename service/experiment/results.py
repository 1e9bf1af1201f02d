"""A study's results as typed records: what the study writes to ``results.json`` and the report
reads back. The figures section is derived from the rest (``figures.figures``) and stored so
that every table and plot, and a later run comparison, reads the same numbers.

Reading accepts every earlier generation of the file (``records`` says how); writing gives
the keys the study has written since schema 2.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from service.experiment.records import OPTIONAL_KEY, Record

SCHEMA = 2


@dataclass(kw_only=True)
class TaskRecord(Record):
    """One problem of an evaluation: each sampled program's pass, status and exception type."""

    passed: list[bool] = field(default_factory=list)
    statuses: list[str] = field(default_factory=list)
    error_types: list[str | None] = field(default_factory=list)


@dataclass(kw_only=True)
class EvaluationRecord(Record):
    """pass@k of one model (base, a round's candidate, an ablation) on one benchmark."""

    key: str = ""  # "<arm>[-rN]/<benchmark>"; older files may lack it (figures derives one)
    arm: str = ""
    round: int = 0
    marker: str | None = None  # "bad": sampled on the bad reward marker
    feedback_steps: int | None = None
    benchmark: str = ""
    split: str | None = None
    adapter: str | None = None
    n: int = 1
    temperature: float = 0.0
    seed: int | None = None
    max_new_tokens: int | None = None
    tasks: dict[str, TaskRecord] = field(default_factory=dict)
    pass_at_k: dict[str, float] = field(default_factory=dict)
    timings_s: dict[str, float] = field(default_factory=dict)
    wall_s: float = 0.0
    programs_file: str | None = None

    def pass_lists(self) -> dict[str, list[bool]]:
        """Each problem's pass flags: what pass@1 and run-to-run identity are computed from."""
        return {task_id: [bool(p) for p in task.passed] for task_id, task in self.tasks.items()}


@dataclass(kw_only=True)
class TrainingRecord(Record):
    """A training run's summary (the trainer's metrics), its error, and the study's bounds."""

    steps: int | None = None
    precision: str | None = None
    feedback_steps: int | None = None
    loss_first: float | None = None
    loss_last: float | None = None
    tokens: int | None = None
    tokens_per_s: float | None = None
    examples: int | None = None
    error: str | None = None
    step_bound: int | None = None
    init: str | None = None


@dataclass(kw_only=True)
class GateRecord(Record):
    """The promotion gate's decision on a round's candidate, with its paired counts."""

    decision: str | None = None  # "promote" or "reject"
    reason: str | None = None
    candidate_pass_at_1: float | None = None
    serving_pass_at_1: float | None = None
    candidate_solved: int | None = None
    serving_solved: int | None = None
    tasks: int | None = None
    difference: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    warning: str | None = None
    gained: list[str] | None = None
    lost: list[str] | None = None


@dataclass(kw_only=True)
class RoundRecord(Record):
    """One LETI round: what was sampled and how it ran, the data, the training and the gate."""

    round: int = 0
    problems: list[str] = field(default_factory=list)
    pool: int | None = None
    samples: int | None = None  # None (older files): the statuses' total
    passed: int | None = None  # None (older files): the "passed" status count
    pool_pass_rate: float | None = None
    truncated: int | None = None
    statuses: dict[str, int] = field(default_factory=dict)
    error_types: dict[str, int] = field(default_factory=dict)
    adapter_sampled: str | None = None
    candidate: str | None = None
    adapter_dir: str | None = None
    data: str | None = None
    selection: dict[str, Any] | None = None  # the loop's selection report, as it gave it
    trained_on: int | None = None
    training: TrainingRecord = field(default_factory=TrainingRecord)
    gate: GateRecord = field(default_factory=GateRecord)
    serving_after: str | None = None
    timings_s: dict[str, float] = field(default_factory=dict)


@dataclass(kw_only=True)
class AblationRecord(Record):
    """An arm compared with a reference evaluation: a trained ablation, or the marker check
    (no training; ``marker`` set, the training keys left out)."""

    name: str = ""
    objective: str | None = None
    marker: str | None = field(default=None, metadata=OPTIONAL_KEY)
    code_ratio: float | None = field(default=None, metadata=OPTIONAL_KEY)
    feedback_steps: int | None = field(default=None, metadata=OPTIONAL_KEY)
    steps: int | None = field(default=None, metadata=OPTIONAL_KEY)
    data_round: int | None = None
    evaluation: str | None = None  # the arm's evaluation key
    compare_to: str | None = None  # the reference's evaluation key
    training: TrainingRecord = field(default_factory=TrainingRecord)
    timings_s: dict[str, float] = field(default_factory=dict)
    # the references ceiling's data: problems asked, references kept, the failed ones' status
    references: dict[str, Any] | None = field(default=None, metadata=OPTIONAL_KEY)


@dataclass(kw_only=True)
class Machine(Record):
    cpu: str | None = None
    cores: int | None = None
    gpu: str | None = None
    system: str | None = None
    python: str | None = None


@dataclass(kw_only=True)
class Environment(Record):
    """Where and when the figures were measured, and with which library versions."""

    machine: Machine | None = None
    versions: dict[str, str] = field(default_factory=dict)
    started_at: str | None = None
    finished_at: str | None = None  # None: the run has not finished
    wall_s: float | None = None
    # the generator as "auto" resolved it (dtype, device, decode path)
    generator: dict[str, Any] | None = field(default=None, metadata=OPTIONAL_KEY)


@dataclass(kw_only=True)
class PassAt1Row(Record):
    key: str = ""
    arm: str = ""
    round: int = 0
    benchmark: str = ""
    split: str | None = None
    feedback_steps: int | None = None
    value: float = 0.0
    ci_low: float = 0.0
    ci_high: float = 0.0
    tasks: int = 0


@dataclass(kw_only=True)
class ComparisonRow(Record):
    """A paired comparison of evaluation ``b`` against ``a`` (a round or an ablation)."""

    name: str = ""
    kind: str = ""  # "round" or "ablation"
    a: str = ""
    b: str = ""
    a_value: float = 0.0
    b_value: float = 0.0
    difference: float = 0.0
    ci_low: float = 0.0
    ci_high: float = 0.0
    tasks: int = 0
    verdict: str = ""


@dataclass(kw_only=True)
class StatusRow(Record):
    """A round's sampled programs by sandbox status and by error type."""

    round: int = 0
    samples: int | None = None
    passed: int | None = None
    counts: dict[str, int] = field(default_factory=dict)
    fractions: dict[str, float] = field(default_factory=dict)
    error_types: dict[str, int] = field(default_factory=dict)
    error_type_fractions: dict[str, float] = field(default_factory=dict)


@dataclass(kw_only=True)
class FailureRow(Record):
    """An evaluation's programs counted by how they ended (``figures.failure_class``)."""

    key: str = ""
    benchmark: str = ""
    programs: int = 0
    counts: dict[str, int] = field(default_factory=dict)


@dataclass(kw_only=True)
class TimingRow(Record):
    label: str = ""
    kind: str = ""  # "baseline", "round" or "ablation"
    round: int | None = None
    phases: dict[str, float] = field(default_factory=dict)
    total: float = 0.0


@dataclass(kw_only=True)
class Figures(Record):
    """The report's numbers, computed from the records by ``figures.figures``."""

    level: float = 0.95
    pass_at_1: list[PassAt1Row] = field(default_factory=list)
    comparisons: list[ComparisonRow] = field(default_factory=list)
    statuses: list[StatusRow] = field(default_factory=list)
    failure_classes: list[FailureRow] = field(default_factory=list)
    timings: list[TimingRow] = field(default_factory=list)


@dataclass(kw_only=True)
class StudyResults(Record):
    """Everything one study measured: results.json."""

    schema: int = SCHEMA
    name: str = "unnamed"
    config: dict[str, Any] = field(default_factory=dict)  # the config's JSON (any version)
    environment: Environment = field(default_factory=Environment)
    phases_done: list[str] = field(default_factory=list)
    evaluations: list[EvaluationRecord] = field(default_factory=list)
    rounds: list[RoundRecord] = field(default_factory=list)
    ablations: list[AblationRecord] = field(default_factory=list)
    figures: Figures | None = field(default=None, metadata=OPTIONAL_KEY)

    # A phase run again (resumed after a crash) replaces what it recorded the first time.
    def put_evaluation(self, record: EvaluationRecord) -> None:
        self.evaluations = [e for e in self.evaluations if e.key != record.key] + [record]

    def put_round(self, record: RoundRecord) -> None:
        self.rounds = [r for r in self.rounds if r.round != record.round] + [record]

    def put_ablation(self, record: AblationRecord) -> None:
        self.ablations = [a for a in self.ablations if a.name != record.name] + [record]


def load_results(path: Path) -> StudyResults:
    """Read a results.json of any schema."""
    return StudyResults.from_json(json.loads(path.read_text(encoding="utf-8")))


def save_results(path: Path, results: StudyResults) -> None:
    """Write results.json atomically: a crash mid-write never leaves half a results file."""
    write_atomic(path, json.dumps(results.to_json(), indent=2, default=str) + "\n")


def write_atomic(path: Path, text: str) -> None:
    """Replace ``path`` in one step: a crash mid-write never leaves half a file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
