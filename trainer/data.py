"""Exported triples -> training text: LETI, its two ablations (binary, SFT), and the file reader.

Every sequence is built by ``trainer.prompts.build_sequence``, the function the generator's
``build_prompt`` shares, so the text trained on is exactly the text sampled from. A file that is
broken or yields no example is an error that names the line, never an empty adapter.

Failed programs cut at the token limit (``finish_reason`` "length") are dropped when read, by
default, or marked, or kept (``LETI_TRAIN_TRUNCATED``; ``apply_truncated``): their feedback
describes where the cut fell, not what the program got wrong, and with the loss on the whole
sequence a fine-tune on them learns to write the repetition that ran into the limit.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from trainer.prompts import Reward, TaskPrompt, build_sequence

ExampleKind = Literal["leti", "binary", "sft", "laffi"]
_KINDS = ("mbpp", "humaneval", "user")

TruncatedPolicy = Literal["drop", "mark", "keep"]
TRUNCATED_POLICIES: tuple[str, ...] = ("drop", "mark", "keep")
TRUNCATED_ENV = "LETI_TRAIN_TRUNCATED"  # the service passes its setting to the trainer here
TRUNCATED_NOTE = "The program was cut off at the token limit before it was finished."


class DatasetError(ValueError):
    """The triples file cannot be trained on; the message names the line and the fix."""


@dataclass(frozen=True)
class Triple:
    """One exported sample: the task, the program, and what running it said (see ARCHITECTURE)."""

    task_id: str
    kind: str
    instruction: str
    program: str
    reward: Reward
    feedback: str = ""
    tests: tuple[str, ...] = ()
    entry_point: str | None = None
    status: str | None = None
    score: float = 0.0
    source: str = "sandbox"
    sample_id: str | None = None
    adapter: str | None = None
    reference: str | None = None
    finish_reason: str | None = None  # "length": generation stopped at the token limit

    def __post_init__(self) -> None:
        object.__setattr__(self, "reward", Reward(self.reward))  # "good"/"bad" strings too
        object.__setattr__(self, "tests", tuple(self.tests))

    @property
    def truncated_failure(self) -> bool:
        """A program cut at the token limit that did not pass."""
        return self.finish_reason == "length" and self.reward is Reward.BAD

    @property
    def task(self) -> TaskPrompt:
        return TaskPrompt(kind=self.kind, instruction=self.instruction,  # type: ignore[arg-type]
                          tests=self.tests, entry_point=self.entry_point)

    @classmethod
    def from_dict(cls, data: Any, *, good_threshold: float = 0.5) -> Triple:
        """Validate one JSON object; ValueError says which field is wrong. A record without a
        ``reward`` is labelled from its status, else its score against ``good_threshold``."""
        if not isinstance(data, dict):
            raise ValueError("a triple must be a JSON object")
        missing = [k for k in ("task_id", "kind", "instruction", "program") if k not in data]
        if data.get("reward") is None and data.get("score") is None:
            missing.append("reward (or score)")
        if missing:
            raise ValueError(f"missing field(s): {', '.join(missing)}")
        if data["kind"] not in _KINDS:
            raise ValueError(f"'kind' is {data['kind']!r}; expected one of {_KINDS}")
        for key in ("task_id", "instruction", "program"):
            if not isinstance(data[key], str):
                raise ValueError(f"'{key}' must be a string")
        score = data.get("score")
        if score is not None and (isinstance(score, bool) or not isinstance(score, (int, float))
                                  or not 0.0 <= score <= 1.0):
            raise ValueError(f"'score' must be a number in [0, 1], got {score!r}")
        if data.get("reward") is None:
            assert score is not None  # a record with neither was refused as missing a field
            reward = derive_reward(float(score), data.get("status"), good_threshold)
        else:
            try:
                reward = Reward(data["reward"])
            except ValueError:
                raise ValueError(f"'reward' is {data['reward']!r}; expected 'good' or 'bad'") \
                    from None
        score = (1.0 if reward is Reward.GOOD else 0.0) if score is None else score
        tests = data.get("tests") or []
        if not isinstance(tests, list) or not all(isinstance(t, str) for t in tests):
            raise ValueError("'tests' must be a list of strings")
        feedback = data.get("feedback") or ""
        if not isinstance(feedback, str):
            raise ValueError("'feedback' must be a string")
        finish_reason = data.get("finish_reason")
        if finish_reason is not None and not isinstance(finish_reason, str):
            raise ValueError("'finish_reason' must be a string or null")
        return cls(task_id=data["task_id"], kind=data["kind"], instruction=data["instruction"],
                   program=data["program"], reward=reward, feedback=feedback, tests=tuple(tests),
                   entry_point=data.get("entry_point"), status=data.get("status"),
                   score=float(score), source=data.get("source") or "sandbox",
                   sample_id=data.get("sample_id"), adapter=data.get("adapter"),
                   reference=data.get("reference"), finish_reason=finish_reason)


def derive_reward(score: float, status: str | None = None, threshold: float = 0.5) -> Reward:
    """The binary label of an unlabelled record: its sandbox status when it has one, else the
    normalised score against ``threshold``."""
    if status is not None:
        return Reward.GOOD if status == "passed" else Reward.BAD
    return Reward.GOOD if score >= threshold else Reward.BAD


@dataclass
class ReadReport:
    """What reading a triples file kept, and what it left out and why."""

    read: int = 0
    kept: int = 0
    policy: str = "drop"  # for failed programs cut at the token limit
    dropped: dict[str, int] = field(default_factory=dict)  # reason -> triples
    marked: int = 0


def truncated_policy(value: str | None = None) -> TruncatedPolicy:
    """The policy for failed programs cut at the token limit: ``value``, else
    ``$LETI_TRAIN_TRUNCATED``, else "drop"."""
    chosen = value if value is not None else os.environ.get(TRUNCATED_ENV) or "drop"
    if chosen not in TRUNCATED_POLICIES:
        raise DatasetError(f"{TRUNCATED_ENV}={chosen!r}: choose one of "
                           f"{', '.join(TRUNCATED_POLICIES)}")
    return chosen  # type: ignore[return-value]


def apply_truncated(triples: Sequence[Triple], policy: TruncatedPolicy,
                    report: ReadReport | None = None) -> list[Triple]:
    """Drop, mark (a line appended to the feedback) or keep the failed programs cut at the
    token limit; passing programs are kept whatever the policy. Counts go into ``report``."""
    report = report if report is not None else ReadReport()
    report.policy = policy
    kept: list[Triple] = []
    for triple in triples:
        if not triple.truncated_failure or policy == "keep":
            kept.append(triple)
        elif policy == "drop":
            report.dropped["truncated failure"] = report.dropped.get("truncated failure", 0) + 1
        else:
            note = f"{triple.feedback.rstrip()}\n{TRUNCATED_NOTE}" if triple.feedback.strip() \
                else TRUNCATED_NOTE
            kept.append(replace(triple, feedback=note))
            report.marked += 1
    report.kept = len(kept)
    return kept


def read_triples(path: Path, *, good_threshold: float = 0.5,
                 truncated: str | None = None) -> list[Triple]:
    """Read and validate a triples file, with the truncated-failure policy applied
    (``truncated_policy``: "drop" unless set); any malformed line is an error naming it."""
    return read_triples_report(path, good_threshold=good_threshold, truncated=truncated)[0]


def read_triples_report(path: Path, *, good_threshold: float = 0.5,
                        truncated: str | None = None) -> tuple[list[Triple], ReadReport]:
    """``read_triples`` and what it left out (``ReadReport``)."""
    policy = truncated_policy(truncated)
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"triples file {path} not found: export one with "
                           "`leti triples export --out FILE`")
    triples: list[Triple] = []
    errors: list[str] = []
    with path.open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                triples.append(Triple.from_dict(json.loads(line),
                                                good_threshold=good_threshold))
            except json.JSONDecodeError as exc:
                errors.append(f"line {number}: invalid JSON ({exc.msg} at column {exc.colno})")
            except ValueError as exc:
                errors.append(f"line {number}: {exc}")
    if errors:
        shown = "\n  ".join(errors[:5])
        more = f"\n  ... and {len(errors) - 5} more" if len(errors) > 5 else ""
        raise DatasetError(f"{path} has {len(errors)} malformed triple(s):\n  {shown}{more}\n"
                           "Fix or drop those lines (format: docs/ARCHITECTURE.md "
                           "'Training triples').")
    if not triples:
        raise DatasetError(f"{path} holds no triples: nothing to train on (export samples that "
                           "were executed first)")
    report = ReadReport(read=len(triples))
    kept = apply_truncated(triples, policy, report)
    if not kept:
        raise DatasetError(f"{path} holds {len(triples)} triple(s), every one a failed program "
                           f"cut at the token limit, which {TRUNCATED_ENV}=drop leaves out: "
                           "nothing to train on (set it to 'mark' or 'keep' to use them)")
    return kept, report


def file_sha256(path: Path) -> str:
    """The data file's hash, recorded in the manifest so a run names exactly what it saw."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class Example:
    """One training sequence as text: the loss covers ``completion`` always, ``prompt`` unless
    masked."""

    prompt: str
    completion: str
    kind: ExampleKind
    task_id: str = ""


def leti_example(triple: Triple, *, binary: bool = False, tokenizer: Any = None) -> Example:
    """LETI: the marker, then (bad samples, unless ``binary``) the feedback, the instruction and
    the program."""
    feedback = None
    if triple.reward is Reward.BAD and not binary and triple.feedback.strip():
        feedback = triple.feedback
    prompt, completion = build_sequence(triple.task, triple.program, reward=triple.reward,
                                        feedback=feedback, tokenizer=tokenizer)
    return Example(prompt, completion, "binary" if binary else "leti", triple.task_id)


def sft_examples(triples: Iterable[Triple], *, tokenizer: Any = None) -> list[Example]:
    """The SFT ablation: one example per task from its reference solution, no marker."""
    seen: dict[str, Example] = {}
    for t in triples:
        if t.reference and t.reference.strip() and t.task_id not in seen:
            prompt, completion = build_sequence(t.task, t.reference, reward=None,
                                                tokenizer=tokenizer)
            seen[t.task_id] = Example(prompt, completion, "sft", t.task_id)
    return list(seen.values())


def feedback_examples(triples: Sequence[Triple], objective: str, *, laffi_ratio: float = 0.0,
                      seed: int = 0, tokenizer: Any = None) -> list[Example]:
    """All examples of the feedback side of training, LaFFi mixed in at ``laffi_ratio``."""
    if objective == "sft":
        examples = sft_examples(triples, tokenizer=tokenizer)
        if not examples:
            raise DatasetError("the SFT ablation needs reference solutions: no triple has a "
                               "'reference' (export MBPP/HumanEval samples, whose tasks have one)")
        return examples
    usable = [t for t in triples if t.program.strip()]
    if not usable:
        raise DatasetError("every triple has an empty program: nothing to train on")
    leti = [] if laffi_ratio >= 1.0 else \
        [leti_example(t, binary=objective == "binary", tokenizer=tokenizer) for t in usable]
    if laffi_ratio <= 0.0:
        return leti
    from trainer.laffi import laffi_example  # LaFFi is optional; keep its module out of LETI runs

    laffi = [laffi_example(t, tokenizer=tokenizer) for t in usable]
    return mix(leti, laffi, laffi_ratio, seed=seed)


def mix(first: list[Example], second: list[Example], fraction_second: float, *,
        seed: int = 0) -> list[Example]:
    """Keep the larger share whole and subsample the other so ``second`` is ``fraction_second``
    of the result (0.5 keeps both whole)."""
    import random

    rng = random.Random(seed)
    if not first or fraction_second >= 1.0:
        return list(second)
    if fraction_second <= 0.0 or not second:
        return list(first)
    if fraction_second <= 0.5:
        want = min(len(second), max(1, round(len(first) * fraction_second / (1 - fraction_second))))
        return first + rng.sample(second, want)
    want = min(len(first), max(1, round(len(second) * (1 - fraction_second) / fraction_second)))
    return rng.sample(first, want) + second
