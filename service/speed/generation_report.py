"""The "## Generation (embedded backend)" section of docs/BENCHMARKS.md, written from one
``GenerationBench``: the workload in words, a row per measured path and width (the llama.cpp
anchor's too), how the best width compares with the anchor and the compute bound, and the
adapter-swap latencies."""

from __future__ import annotations

import os
import statistics

from service.speed.generation_records import GenerationBench, Throughput

TITLE = "## Generation (embedded backend)"
_HEAD = ("| path | dtype | rows | samples | tokens | ended by stop/EOS | seconds | tokens/s "
         "| tokens/CPU-s | vs baseline | busy share |")
_RULE = "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"


def markdown_section(bench: GenerationBench, machine: str, date: str, model: str) -> str:
    """The section, every figure read from ``bench`` (none re-derived from logs)."""
    rows = _rows(bench)
    best = bench.best("fast" if any(t.path == "fast" for t in bench.runs) else "reference")
    lines = [TITLE, "", _intro(bench, machine, date, model), "", _HEAD, _RULE, *rows,
             "", _versus(bench, best), ""]
    if bench.swap_idle_s:
        lines += [_swaps(bench), ""]
    return "\n".join(lines)


def _intro(bench: GenerationBench, machine: str, date: str, model: str) -> str:
    """What ran, on what, and how the table's columns are counted."""
    w = bench.workload
    stop = ", ".join(repr(s) for s in w.stop) or "none"
    return (
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


def _rows(bench: GenerationBench) -> list[str]:
    """A table row per measured run, then the anchor's when it ran."""
    base = bench.baseline
    rows = [_row(t, base) for t in bench.runs]
    a = bench.anchor
    if a is not None:
        rows.append(f"| llama.cpp server ({a.slots} slots) | Q4_1 | {a.slots} | {a.prompts * a.n} "
                    f"| {a.tokens} | {a.prompts * a.n - a.stopped_by_length} | {a.seconds:.1f} | "
                    f"{a.tokens_per_s:.1f} | - | {a.tokens_per_s / base.tokens_per_s:.2f}x | - |")
    return rows


def _row(t: Throughput, base: Throughput) -> str:
    name = t.path
    if t.path == "reference":
        name = ("reference, a request thread (baseline: as before)" if t.thread == "request"
                else "reference, compute thread")
    busy = f"{t.busy_share:.2f}" if t.busy_share is not None else "-"
    return (f"| {name} | {t.dtype} | {t.rows} | {t.samples} | {t.tokens} | {t.stopped} | "
            f"{t.seconds:.1f} | {t.tokens_per_s:.1f} | {t.tokens_per_cpu_s:.1f} | "
            f"{t.tokens_per_s / base.tokens_per_s:.2f}x | {busy} |")


def _versus(bench: GenerationBench, best: Throughput) -> str:
    """The best width against the llama.cpp anchor (or why it did not run) and the compute
    bound."""
    a, base = bench.anchor, bench.baseline
    if a is not None:
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
    return versus


def _swaps(bench: GenerationBench) -> str:
    ms, busy_ms = [x * 1000 for x in bench.swap_idle_s], [x * 1000 for x in bench.swap_busy_s]
    return (
        "Adapter hot swap (load a rank-16 LoRA on all projections as a new version, merge it "
        "into the fast path's weights, and move the alias; the old version is retired after "
        f"its requests): idle median {statistics.median(ms):.0f} ms (max {max(ms):.0f} ms, "
        f"{len(ms)} swaps); with an 8-prompt generation in flight median "
        f"{statistics.median(busy_ms):.0f} ms (max {max(busy_ms):.0f} ms): the load waits for "
        "at most one forward pass, and the running generation finishes on its own adapter.")
