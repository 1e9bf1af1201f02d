"""The promotion gate: a paired decision on validation problems the loop never trains on.

The candidate and the serving adapter are measured on the same problems, prompts and seed
(greedy by default, on MBPP's whole validation split); the serving adapter's per-problem results
are stored with it and reused, not re-sampled, while the spec is unchanged. The decision is
paired over problems (``paired_decision``): the candidate is refused when it solves fewer
problems than the serving adapter (beyond ``LETI_GATE_MARGIN``), or when a paired bootstrap
interval of the per-problem difference lies wholly below zero. The decision keeps its
per-problem table, and says when the gate has too few problems to see a drop of
``LETI_GATE_MIN_DETECTABLE``. Gate samples are never stored: validation problems must not leak
into training.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio.to_thread

from service.core.config import Settings
from service.core.evaluation import SandboxExecutor
from service.core.programs import completion_program, task_job, task_prompt
from service.store.db import Store
from service.store.models import TaskRow
from service.store.tasks import get_task

if TYPE_CHECKING:
    from service.generation.base import Generator

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GateSpec:
    """What makes two measurements comparable."""

    problems: tuple[str, ...]
    seed: int
    temperature: float
    max_new_tokens: int

    def key(self) -> dict[str, Any]:
        return {"problems": list(self.problems), "seed": self.seed,
                "temperature": self.temperature, "max_new_tokens": self.max_new_tokens}


def gate_spec(problem_ids: list[str], settings: Settings) -> GateSpec:
    """The first ``LETI_GATE_PROBLEMS`` validation problems, the fixed seed and temperature."""
    return GateSpec(tuple(problem_ids[:settings.gate_problems]), settings.gate_seed,
                    settings.gate_temperature, settings.loop_max_new_tokens)


def _tasks(store: Store, ids: tuple[str, ...]) -> list[TaskRow]:
    with store.read() as session:
        return [t for t in (get_task(session, i) for i in ids) if t is not None]


async def pass_at_1(spec: GateSpec, adapter: str | None, *, generator: Generator, tokenizer: Any,
                    store: Store, sandbox: SandboxExecutor, settings: Settings) -> dict[str, Any]:
    """pass@1 of ``adapter`` (None: the base model) on the spec's problems; adapters sample
    conditioned on the "good" marker, the base model without it (as in the loop)."""
    from service.generation import SamplingParams
    from trainer.prompts import PROGRAM_STOP

    tasks = await anyio.to_thread.run_sync(_tasks, store, spec.problems)
    if not tasks:
        raise ValueError("no validation problems to gate on")
    prompts = [task_prompt(t, tokenizer, conditioned=adapter is not None) for t in tasks]
    params = SamplingParams(n=1, temperature=spec.temperature, top_p=0.95,
                            max_new_tokens=spec.max_new_tokens, seed=spec.seed, stop=PROGRAM_STOP)
    outputs = await generator.generate(prompts, params, adapter=adapter or "base")
    jobs = [task_job(task, completion_program(task, completion.text),
                     timeout=settings.sandbox_timeout_s, memory_mb=settings.sandbox_memory_mb)
            for task, (completion, *_) in zip(tasks, outputs, strict=True)]
    outcomes = await sandbox.run_many(jobs)
    passed = [t.id for t, o in zip(tasks, outcomes, strict=True) if o.passed]
    results = {t.id: {"passed": o.passed, "status": o.status.value, "error_type": o.error_type}
               for t, o in zip(tasks, outcomes, strict=True)}
    return {**spec.key(), "adapter": adapter, "pass_at_1": len(passed) / len(tasks),
            "passed": passed, "results": results}


def detectable_drop(problems: int, confidence: float) -> int:
    """The fewest problems lost (none gained) that the paired bootstrap calls a drop: its upper
    bound falls below zero once fewer than (1 - confidence) / 2 of the resamples miss every lost
    problem, i.e. (1 - k/n)^n < (1 - confidence) / 2."""
    tail = (1.0 - confidence) / 2.0
    for k in range(1, problems + 1):
        if (1.0 - k / problems) ** problems < tail:
            return k
    return problems


@dataclass(frozen=True)
class GateDecision:
    """A paired decision over the problems both adapters were measured on."""

    promote: bool
    reason: str
    metrics: dict[str, Any]
    warning: str | None


def paired_decision(candidate: dict[str, Any], serving: dict[str, Any], *, margin: float,
                    confidence: float, min_detectable: float, seed: int = 0) -> GateDecision:
    """Promote unless the candidate solves fewer problems than ``serving`` by more than
    ``margin`` (as a share of the problems), or the paired bootstrap interval of the
    per-problem difference (candidate - serving) lies wholly below zero."""
    from service.experiment.stats import paired_difference

    ids = [i for i in candidate["problems"] if i in candidate["results"]
           and i in serving["results"]]
    if not ids:
        raise ValueError("the candidate and the serving adapter share no gate problems")
    cand = {i: float(candidate["results"][i]["passed"]) for i in ids}
    serv = {i: float(serving["results"][i]["passed"]) for i in ids}
    n, solved_c, solved_s = len(ids), int(sum(cand.values())), int(sum(serv.values()))
    diff = paired_difference(serv, cand, level=confidence, seed=seed)
    gained = [i for i in ids if cand[i] > serv[i]]
    lost = [i for i in ids if cand[i] < serv[i]]
    allowed = math.floor(margin * n + 1e-9)  # problems the candidate may solve fewer
    interval = f"[{diff.ci_low * 100:+.1f}, {diff.ci_high * 100:+.1f}] points"
    head = (f"solved {solved_c}/{n} vs serving {solved_s}/{n} (+{len(gained)} -{len(lost)}), "
            f"paired difference {diff.difference * 100:+.1f} points, "
            f"{confidence:.0%} interval {interval}")
    if solved_c < solved_s - allowed:
        promote = False
        why = f"solves fewer problems than the serving adapter (margin {allowed} problem(s))"
    elif diff.ci_high < 0:
        promote, why = False, "the paired interval shows it worse"
    else:
        promote, why = True, "not fewer solved and not shown worse"
    k = detectable_drop(n, confidence)
    warning = None
    if k / n > min_detectable:
        warning = (f"the gate's {n} problems cannot show a drop smaller than {k} problems "
                   f"({k / n:.1%}) as worse, above LETI_GATE_MIN_DETECTABLE={min_detectable:g}: "
                   "raise LETI_GATE_PROBLEMS")
        log.warning("promotion gate: %s", warning)
    metrics = {"candidate_pass_at_1": solved_c / n, "serving_pass_at_1": solved_s / n,
               "candidate_solved": solved_c, "serving_solved": solved_s, "tasks": n,
               "gained": gained, "lost": lost, "difference": diff.difference,
               "ci_low": diff.ci_low, "ci_high": diff.ci_high, "confidence": confidence,
               "margin": margin, "detectable_drop": k, "warning": warning,
               "table": {i: [int(serv[i]), int(cand[i])] for i in ids}}
    return GateDecision(promote, f"{why}: {head}", metrics, warning)
