"""What the next training run learns from: data that accumulates over rounds.

A round's own triples are mostly failures (docs/RESULTS.md), and training on them alone,
round after round, is self-distillation on wrong programs that forgets what earlier rounds got
right. So each run trains on:

- **every passing program of every round** (trainable triples up to the window's end), with
  duplicates removed (the same task and the same program once its comments, docstrings and
  layout are normalised away) and at most ``LETI_TRAIN_MAX_PASSING_PER_PROBLEM`` per problem
  (the oldest first, so the set a problem contributes is stable from run to run), so a few easy
  problems cannot crowd out the rest;
- **the current window's failures** (the triples since the last finished run: what the serving
  policy gets wrong now), deduplicated the same way, at most
  ``LETI_TRAIN_MAX_FAILURES_PER_PROBLEM`` per problem, drawn round-robin over their error types
  (wrong answer, NameError, SyntaxError, ...) so distinct mistakes come before repeats of one;
  failures cut at the token limit are left out under ``LETI_TRAIN_TRUNCATED=drop`` (and kept,
  for the trainer to mark or keep, otherwise).

Split hygiene holds here as everywhere: only triples marked trainable when stored are read.
The report says what was considered, kept and left out, and why. The trainer's
heterogeneous-feedback selection (``--min-score``, ``--keep-fraction``) runs on top of this
file, as on any other.
"""

from __future__ import annotations

import ast
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from service.store.db import Store
from service.store.triples import TRUNCATED, TripleFilter, contract_record, with_outcomes

WRONG_ANSWER = "wrong answer"


@dataclass(frozen=True)
class Candidate:
    """One trainable triple the selection may pick: its id, contract record and error class."""

    id: int
    record: dict[str, Any]
    error_class: str | None  # None for a passing program

    @property
    def task_id(self) -> str:
        return str(self.record["task_id"])

    @property
    def passed(self) -> bool:
        return self.record["reward"] == "good"

    @property
    def truncated_failure(self) -> bool:
        return not self.passed and self.record.get("finish_reason") == TRUNCATED


@dataclass
class Selection:
    """The records to train on, in triple-id order, and the report of how they were chosen."""

    records: list[dict[str, Any]] = field(default_factory=list)
    ids: list[int] = field(default_factory=list)
    report: dict[str, Any] = field(default_factory=dict)


def normalise_program(program: str) -> str:
    """The program with comments, docstrings, blank lines and layout removed: two programs
    that differ only there are the same training example. A program that does not parse is
    compared with its whitespace collapsed."""
    try:
        tree = ast.parse(program)
    except (SyntaxError, ValueError):
        return " ".join(program.split())
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) \
                and body and isinstance(body[0], ast.Expr) \
                and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
            node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree, annotate_fields=False)


def error_class(status: str | None, error_type: str | None, source: str) -> str:
    """A failure's kind, for preferring distinct mistakes: a wrong answer, the exception's
    type, a syntax error, a timeout, ...; external feedback without a run is its own class."""
    if status is None:
        return "external" if source == "external" else "not run"
    if status == "failed":
        return WRONG_ANSWER
    if status == "syntax_error":
        return "SyntaxError"
    if status == "error" and error_type:
        return error_type
    return status


def candidates(store: Store, upto: int) -> list[Candidate]:
    """Every trainable triple with an id up to ``upto``, oldest first, with its error class."""
    where = TripleFilter(trainable=True, upto=upto)  # split hygiene: never a held-out triple
    out = []
    with store.read() as session:
        for triple, sample, task, outcome in with_outcomes(session, where):
            record = contract_record(triple, sample, task)
            kind = None if record["reward"] == "good" else error_class(
                triple.status, (outcome or {}).get("error_type"), triple.source)
            out.append(Candidate(triple.id, record, kind))
    return out


def _dedup(items: Iterable[Candidate], seen: set[tuple[str, str]]) -> tuple[list[Candidate], int]:
    kept, duplicates = [], 0
    for item in items:
        key = (item.task_id, normalise_program(str(item.record["program"])))
        if key in seen:
            duplicates += 1
            continue
        seen.add(key)
        kept.append(item)
    return kept, duplicates


def _distinct_errors_first(failures: list[Candidate], cap: int) -> list[Candidate]:
    """Up to ``cap`` failures, one of each error class in turn (oldest first within a class)."""
    by_class: dict[str, list[Candidate]] = defaultdict(list)
    for item in failures:
        by_class[item.error_class or "?"].append(item)
    queues = list(by_class.values())
    picked: list[Candidate] = []
    while len(picked) < cap and any(queues):
        for queue in queues:
            if queue and len(picked) < cap:
                picked.append(queue.pop(0))
    return picked


def select_training_data(store: Store, *, after: int, upto: int, truncated: str,
                         max_passing: int, max_failures: int) -> Selection:
    """The accumulated passes and the window's failures (module docstring), with the report."""
    pool = candidates(store, upto)
    passing = [c for c in pool if c.passed]
    window_failures = [c for c in pool if not c.passed and c.id > after]
    older_failures = sum(1 for c in pool if not c.passed and c.id <= after)

    seen: set[tuple[str, str]] = set()
    unique_passing, passing_duplicates = _dedup(passing, seen)
    kept_passing: list[Candidate] = []
    per_problem: Counter[str] = Counter()
    for item in unique_passing:
        if per_problem[item.task_id] < max_passing:
            kept_passing.append(item)
            per_problem[item.task_id] += 1
    passing_over_cap = len(unique_passing) - len(kept_passing)

    cut = [c for c in window_failures if c.truncated_failure]
    usable = window_failures if truncated != "drop" else \
        [c for c in window_failures if not c.truncated_failure]
    # a failure that repeats a passing program (external feedback can disagree) or another
    # failure of the same problem teaches nothing new
    unique_failures, failure_duplicates = _dedup(usable, seen)
    by_task: dict[str, list[Candidate]] = defaultdict(list)
    for item in unique_failures:
        by_task[item.task_id].append(item)
    kept_failures = [c for items in by_task.values()
                     for c in _distinct_errors_first(items, max_failures)]

    chosen = sorted(kept_passing + kept_failures, key=lambda c: c.id)
    problems: dict[str, dict[str, int]] = {}
    for item in chosen:
        entry = problems.setdefault(item.task_id, {"passing": 0, "failures": 0})
        entry["passing" if item.passed else "failures"] += 1
    report = {
        "policy": "accumulate", "window": [after + 1, upto],
        "max_passing_per_problem": max_passing, "max_failures_per_problem": max_failures,
        "truncated": truncated,
        "passing": {"candidates": len(passing),
                    "from_earlier_windows": sum(1 for c in passing if c.id <= after),
                    "duplicates": passing_duplicates, "over_cap": passing_over_cap,
                    "kept": len(kept_passing)},
        "failures": {"candidates": len(window_failures),
                     "earlier_windows_not_replayed": older_failures,
                     "truncated": len(cut),
                     "truncated_dropped": len(cut) if truncated == "drop" else 0,
                     "duplicates": failure_duplicates,
                     "over_cap": len(unique_failures) - len(kept_failures),
                     "kept": len(kept_failures),
                     "kept_by_error": dict(Counter(c.error_class or "?" for c in kept_failures)
                                           .most_common()),
                     "truncated_kept": sum(1 for c in kept_failures if c.truncated_failure)},
        "kept": len(chosen), "problems": len(problems), "per_problem": problems,
    }
    return Selection([c.record for c in chosen], [c.id for c in chosen], report)


def nothing_selected(report: dict[str, Any]) -> str:
    """Why a selection came out empty, in one sentence."""
    fails = report["failures"]
    parts = [f"{report['passing']['candidates']} passing program(s) in all",
             f"{fails['candidates']} new failure(s)"]
    if fails["truncated_dropped"]:
        parts.append(f"{fails['truncated_dropped']} of them failed programs cut at the token "
                     "limit, which LETI_TRAIN_TRUNCATED=drop leaves out")
    return "nothing selected to train on: " + ", ".join(parts)
