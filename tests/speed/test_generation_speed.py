"""``leti bench generate``'s engine on a tiny model: the reference path (baseline) and each
fast-path width sample the loop's workload on the same prompts and seeds, the anchor is skipped
with its reason when llama.cpp is not built, swaps are timed idle and busy, and the markdown
section it writes into docs/BENCHMARKS.md replaces only its own section."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from service.speed.generation import run_generation_bench
from service.speed.generation_report import markdown_section
from service.speed.sections import write_section


async def test_bench_measures_baseline_each_width_and_swaps(
        tiny_generator: Any, mbpp_path: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LETI_LLAMA_CPP_DIR", str(tmp_path / "no-llama"))
    bench = await run_generation_bench(tiny_generator, 3, [2, 4], swaps=2, mbpp_path=mbpp_path,
                                       n=2, max_new_tokens=6, log=lambda *_: None)

    assert bench.workload.source == "MBPP (train split)" and bench.workload.prompts == 3
    assert bench.workload.stop == ("\n```\n",)
    assert [(t.path, t.thread, t.rows) for t in bench.runs] == [
        ("reference", "request", 32), ("reference", "compute", 32), ("fast", "compute", 2),
        ("fast", "compute", 4)]
    for run in bench.runs:
        assert run.samples == 6 and 0 < run.tokens <= 6 * 6 and run.seconds > 0
    # The same prompts and seeds: both paths and every width sample the same tokens.
    assert {t.tokens for t in bench.runs} == {bench.baseline.tokens}
    assert bench.baseline.thread == "request" and bench.baseline.busy_share is None
    assert all(0 < t.busy_share <= 1 for t in bench.runs if t.path == "fast")
    assert bench.anchor is None and "scripts/build-llama-cpp.sh" in bench.anchor_skipped
    assert len(bench.swap_idle_s) == len(bench.swap_busy_s) == 2
    assert all(0 < s < 30 for s in bench.swap_idle_s + bench.swap_busy_s)
    assert tiny_generator.max_batch_size == bench.best().rows  # the best width serves

    section = markdown_section(bench, "test machine", "2026-01-01", "tiny")
    assert section.startswith("## Generation (embedded backend)")
    base = bench.baseline
    assert (f"| reference, a request thread (baseline: as before) | {base.dtype} | 32 | 6 | "
            f"{base.tokens} |") in section
    assert "| reference, compute thread |" in section
    assert "1.00x" in section and f"{bench.threads} torch thread(s)" in section
    assert "The llama.cpp anchor did not run" in section
    assert bench.ceiling_tokens_per_s and "The compute bound" in section


def test_write_section_replaces_only_its_own_section(tmp_path: Path) -> None:
    docs = tmp_path / "BENCHMARKS.md"
    docs.write_text("# Benchmarks\n\n## Sandbox\n\nold sandbox\n\n## Generation (embedded backend)"
                    "\n\nold figures\n\n## Training\n\ntraining figures\n")
    write_section(docs, "## Generation (embedded backend)\n\nnew figures\n")
    text = docs.read_text()
    assert "new figures" in text and "old figures" not in text
    assert text.index("## Sandbox") < text.index("new figures") < text.index("## Training")
    assert "old sandbox" in text and "training figures" in text


async def test_bench_runs_the_baseline_in_the_previous_dtype(
        tiny_model: Any, smol_tokenizer: Any, mbpp_path: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A bfloat16 generator is measured against the float32 reference path, and the fast path
    runs once in float32 too, so the dtype's gain and the path's gain read apart."""
    import copy

    import torch

    from service.generation.embedded import EmbeddedGenerator

    monkeypatch.setenv("LETI_LLAMA_CPP_DIR", str(tmp_path / "no-llama"))
    fp32 = copy.deepcopy(tiny_model)
    generator = EmbeddedGenerator(tiny_model.to(torch.bfloat16), smol_tokenizer)
    bench = await run_generation_bench(generator, 2, [2, 4], swaps=0, mbpp_path=mbpp_path, n=2,
                                       max_new_tokens=5, anchor=False, baseline_model=fp32,
                                       log=lambda *_: None)
    assert [(t.path, t.dtype, t.rows) for t in bench.runs] == [
        ("reference", "float32", 32), ("reference", "float32", 32), ("fast", "float32", 4), ("fast", "bfloat16", 2),
        ("fast", "bfloat16", 4)]
    assert bench.best().dtype == "bfloat16" and bench.anchor_skipped.startswith("not asked")
    assert "| reference, a request thread (baseline: as before) | float32 |" in markdown_section(bench, "m", "d", "tiny")
