"""One collection round: the next batch of training problems, ``n`` programs each from the
serving adapter (conditioned on the "good" marker; unconditioned while the base model serves),
run in the sandbox and stored with their triples by the same use case ``POST /v1/generate``
uses."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from service.core.config import Settings
from service.core.generation import Generation, GenerationInput

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RoundResult:
    round: int
    problems: list[str]
    samples: int
    passed: int
    adapter: str | None


def next_batch(problem_ids: list[str], cursor: int, size: int) -> tuple[list[str], int]:
    """``size`` problems from ``cursor``, wrapping around; and the cursor after them."""
    if not problem_ids:
        return [], cursor
    size = min(size, len(problem_ids))
    batch = [problem_ids[(cursor + i) % len(problem_ids)] for i in range(size)]
    return batch, (cursor + size) % len(problem_ids)


async def collect_round(generation: Generation, problems: list[str], round_number: int,
                        settings: Settings) -> RoundResult:
    """Sample, execute and store every problem of the round (seeded by round and problem)."""
    samples = passed = 0
    adapter: str | None = None
    for index, task_id in enumerate(problems):
        result = await generation.generate(GenerationInput(
            task_id=task_id, n=settings.loop_samples_per_problem,
            temperature=settings.loop_temperature, max_new_tokens=settings.loop_max_new_tokens,
            seed=round_number * 10_000 + index, evaluate=True))
        adapter = result.adapter
        samples += len(result.samples)
        passed += sum(1 for s in result.samples if s.result is not None and s.result.outcome.passed)
    log.info("loop round %d: %d programs, %d passed (adapter %s)", round_number, samples, passed,
             adapter or "base")
    return RoundResult(round_number, problems, samples, passed, adapter)
