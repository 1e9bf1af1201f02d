"""The quality check behind ``dtype="auto"``: does a faster dtype give the same MBPP outcome?

A cheaper dtype changes the numbers the model computes, so greedy programs can change. The check
samples every problem greedily (the loop's prompt, stop rule and token budget) in float32 and in
each candidate dtype, runs the programs in the sandbox, and compares pass@1 paired over problems
(``stats.paired_difference``): a candidate passes when the paired 95% interval holds zero. It
also reports how many programs are identical, a stricter reading of "the same model".
``leti bench dtype`` runs it; the figures go into docs/BENCHMARKS.md.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from service.experiment.stats import Difference, paired_difference

REFERENCE = "float32"


@dataclass
class DtypeRun:
    """One dtype's greedy pass over the problems."""

    dtype: str
    passed: dict[str, bool] = field(default_factory=dict)
    programs: dict[str, str] = field(default_factory=dict)
    tokens: int = 0
    seconds: float = 0.0  # generation only (the sandbox's time is the same for every dtype)
    decode_path: str = ""

    @property
    def pass_at_1(self) -> float:
        return sum(self.passed.values()) / len(self.passed) if self.passed else 0.0

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0


@dataclass
class Comparison:
    dtype: str
    difference: Difference  # candidate - float32, paired over problems
    identical: int  # problems whose programs are the same text in both dtypes
    problems: int

    @property
    def passes(self) -> bool:
        return self.difference.verdict == "no difference"


@dataclass
class DtypeCheck:
    problems: int
    split: str
    max_new_tokens: int
    device: str
    runs: list[DtypeRun]
    comparisons: list[Comparison]


def compare(reference: DtypeRun, candidate: DtypeRun) -> Comparison:
    """Paired pass@1 difference (candidate - reference) and the identical-program count."""
    shared = sorted(set(reference.passed) & set(candidate.passed))
    difference = paired_difference({t: float(reference.passed[t]) for t in shared},
                                   {t: float(candidate.passed[t]) for t in shared})
    identical = sum(reference.programs[t] == candidate.programs[t] for t in shared)
    return Comparison(candidate.dtype, difference, identical, len(shared))


async def greedy_run(generator: Any, tasks: list[Any], sandbox: Any, dtype: str,
                     max_new_tokens: int) -> DtypeRun:
    """Greedy programs for ``tasks`` from ``generator`` (one request), graded by ``sandbox``."""
    from sandbox.types import DEFAULT_MEMORY_MB, DEFAULT_TIMEOUT_S
    from service.core.programs import completion_program, task_job
    from service.generation import SamplingParams
    from service.speed.generation import base_prompts
    from trainer.prompts import PROGRAM_STOP

    prompts = base_prompts(generator.tokenizer, tasks)
    params = SamplingParams(n=1, temperature=0.0, max_new_tokens=max_new_tokens,
                            stop=PROGRAM_STOP, seed=0)
    started = time.perf_counter()
    outputs = await generator.generate(prompts, params)
    run = DtypeRun(dtype, seconds=time.perf_counter() - started,
                   decode_path=generator.decode_path)
    jobs = []
    for task, (completion, *_) in zip(tasks, outputs, strict=True):
        program = completion_program(task, completion.text)
        run.programs[task.task_id] = program
        run.tokens += completion.completion_tokens
        jobs.append(task_job(task, program, timeout=DEFAULT_TIMEOUT_S,
                             memory_mb=DEFAULT_MEMORY_MB, id=task.task_id))
    outcomes = await sandbox.run_many(jobs)
    run.passed = {t.task_id: o.passed for t, o in zip(tasks, outcomes, strict=True)}
    return run


async def run_dtype_check(dtypes: list[str], problems: int, *, model: str | None = None,
                          device: str = "auto", mbpp_path: str | Path | None = None,
                          max_new_tokens: int = 256, rows: int | None = None,
                          log: Any = print) -> DtypeCheck:
    """float32 and each of ``dtypes`` on the first ``problems`` MBPP test problems."""
    import gc

    from sandbox import make_sandbox
    from sandbox.tasks import load_mbpp
    from service.generation.embedded import EmbeddedGenerator

    tasks = load_mbpp(mbpp_path, split="test")[:problems]
    runs: list[DtypeRun] = []
    device_name = device
    sandbox = make_sandbox("local")
    try:
        for dtype in [REFERENCE, *[d for d in dtypes if d != REFERENCE]]:
            extra = {"max_batch_size": rows} if rows else {}
            generator = EmbeddedGenerator.load(model, device=device, dtype=dtype, **extra)
            runs.append(await greedy_run(generator, tasks, sandbox, dtype, max_new_tokens))
            run = runs[-1]
            log(f"{dtype}: pass@1 {run.pass_at_1:.3f} on {len(run.passed)} problems, "
                f"{run.tokens_per_s:.1f} tokens/s ({run.decode_path} path)")
            device_name = str(generator.model.device)
            await generator.close()
            del generator
            gc.collect()
    finally:
        sandbox.close()
    comparisons = [compare(runs[0], run) for run in runs[1:]]
    return DtypeCheck(len(tasks), "test", max_new_tokens, device_name, runs, comparisons)


def markdown_section(check: DtypeCheck, machine: str, date: str, model: str) -> str:
    """The "## Dtype quality check" section of docs/BENCHMARKS.md."""
    ref = check.runs[0]
    rows = [f"| {r.dtype} | {sum(r.passed.values())}/{len(r.passed)} ({100 * r.pass_at_1:.1f}%) "
            f"| {r.tokens} | {r.seconds:.0f} | {r.tokens_per_s:.1f} | - | - | - |" for r in [ref]]
    for run, c in zip(check.runs[1:], check.comparisons, strict=True):
        d = c.difference
        rows.append(f"| {run.dtype} | {sum(run.passed.values())}/{len(run.passed)} "
                    f"({100 * run.pass_at_1:.1f}%) | {run.tokens} | {run.seconds:.0f} | "
                    f"{run.tokens_per_s:.1f} | {100 * d.difference:+.1f} "
                    f"[{100 * d.ci_low:+.1f}, {100 * d.ci_high:+.1f}] | "
                    f"{c.identical}/{c.problems} | {'yes' if c.passes else 'no'} |")
    return "\n".join([
        "## Dtype quality check", "",
        (f"`leti bench dtype` on {date}: {machine}; {model} on {check.device}. Greedy programs "
        f"(the loop's prompt and stop rule, up to {check.max_new_tokens} new tokens) for the "
        f"first {check.problems} MBPP {check.split}-split problems in each dtype, graded by the "
        "local sandbox. A dtype passes when the paired 95% bootstrap interval of its pass@1 "
        "minus float32's, over problems, holds zero; `dtype=\"auto\"` takes the fastest dtype "
        "that passes on the device (trainer/base_model.py)."), "",
        ("| dtype | pass@1 | tokens | seconds | tokens/s | vs float32 (points, 95% CI) "
         "| identical programs | passes |"),
        "|---|---:|---:|---:|---:|---:|---:|---|", *rows, ""])
