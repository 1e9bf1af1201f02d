"""The promotion gate: pass@1 on validation problems at a low temperature with a fixed seed.

The candidate and the serving adapter are measured on the same problems, prompts and seed (the
serving adapter's figure is reused when it was measured that way before), and the candidate is
promoted unless it is worse by more than ``LETI_GATE_MARGIN``. Gate samples are never stored:
validation problems must not leak into training. On CPU keep ``LETI_GATE_PROBLEMS`` small (10 by
default): each problem is one sampled program per adapter.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import anyio.to_thread

from sandbox import Job
from service.core.config import Settings
from service.core.evaluation import SandboxGate, executed_program
from service.store.db import Store
from service.store.models import TaskRow
from service.store.triples import prompt_tests


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
        return [t for t in (session.get(TaskRow, i) for i in ids) if t is not None]


def _prompt(task: TaskRow, tokenizer: Any, conditioned: bool) -> str:
    from trainer.prompts import Reward, TaskPrompt, build_prompt

    prompt_task = TaskPrompt(kind=task.kind, instruction=task.instruction,  # type: ignore[arg-type]
                             tests=tuple(prompt_tests(task)), entry_point=task.entry_point)
    return build_prompt(prompt_task, reward=Reward.GOOD if conditioned else None,
                        tokenizer=tokenizer)


async def pass_at_1(spec: GateSpec, adapter: str | None, *, generator: Any, tokenizer: Any,
                    store: Store, sandbox: SandboxGate, settings: Settings) -> dict[str, Any]:
    """pass@1 of ``adapter`` (None: the base model) on the spec's problems; adapters sample
    conditioned on the "good" marker, the base model without it (as in the loop)."""
    from service.generation import SamplingParams, extract_program
    from trainer.prompts import entry_point_from_tests

    tasks = await anyio.to_thread.run_sync(_tasks, store, spec.problems)
    if not tasks:
        raise ValueError("no validation problems to gate on")
    prompts = [_prompt(t, tokenizer, adapter is not None) for t in tasks]
    params = SamplingParams(n=1, temperature=spec.temperature, top_p=0.95,
                            max_new_tokens=spec.max_new_tokens, seed=spec.seed)
    outputs = await generator.generate(prompts, params, adapter=adapter or "base")
    jobs = []
    for task, (completion, *_) in zip(tasks, outputs, strict=True):
        entry = task.entry_point or entry_point_from_tests(tuple(task.tests or ()))
        program = executed_program(task, extract_program(completion.text, entry))
        jobs.append(Job(program=program, tests=tuple(task.tests), setup=task.setup,
                        timeout=settings.sandbox_timeout_s, memory_mb=settings.sandbox_memory_mb))
    outcomes = await sandbox.run_many(jobs)
    passed = [t.id for t, o in zip(tasks, outcomes, strict=True) if o.passed]
    return {**spec.key(), "adapter": adapter, "pass_at_1": len(passed) / len(tasks),
            "passed": passed}


def verdict(candidate: float, serving: float, margin: float) -> tuple[bool, str]:
    """Promote unless the candidate is worse than the serving adapter by more than ``margin``."""
    if candidate >= serving - margin:
        return True, (f"pass@1 {candidate:.3f} vs serving {serving:.3f}: within the margin "
                      f"{margin:g} (or better)")
    return False, f"pass@1 {candidate:.3f} vs serving {serving:.3f}: worse by more than {margin:g}"
