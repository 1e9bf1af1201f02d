"""``leti bench generate``'s engine on a tiny model: every batch width and the plain loop are
measured on the same prompts, swaps are timed idle and busy, and the markdown section it writes
into docs/BENCHMARKS.md replaces only its own section."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from service.generation.benchmark import markdown_section, run_generation_bench, write_section


async def test_bench_measures_each_width_the_loop_and_swaps(tiny_generator: Any,
                                                            mbpp_path: Path) -> None:
    bench = await run_generation_bench(tiny_generator, batches=[1, 4], chunks=[2, 4],
                                       max_new_tokens=6, swaps=2, mbpp_path=mbpp_path,
                                       log=lambda *_: None)

    assert bench.prompts == "MBPP (test split)"
    assert sorted((t.batch, t.chunk) for t in bench.batched) == [(1, 1), (4, 2), (4, 4)]
    assert [t.batch for t in bench.loop] == [1, 4] and all(t.chunk == 1 for t in bench.loop)
    for run in [*bench.batched, *bench.loop]:
        assert 0 < run.tokens <= run.batch * 6 and run.seconds > 0 and run.cpu_seconds > 0
    # The same prompts and seeds: the loop and each width generate the same number of tokens.
    assert {t.tokens for t in bench.batched if t.batch == 4} == {bench.loop_for(4).tokens}
    assert len(bench.swap_idle_s) == len(bench.swap_busy_s) == 2
    assert all(0 < s < 30 for s in bench.swap_idle_s + bench.swap_busy_s)
    assert tiny_generator.max_batch_size == bench.best(4).chunk  # the best width serves

    section = markdown_section(bench, "test machine", "2026-01-01", "tiny")
    assert section.startswith("## Generation (embedded backend)")
    best, loop = bench.best(4), bench.loop_for(4)
    assert f"| 4 | {best.tokens_per_s:.1f} ({best.chunk} rows) | {loop.tokens_per_s:.1f} |" in section
    assert f"{bench.threads} torch thread(s)" in section


def test_write_section_replaces_only_its_own_section(tmp_path: Path) -> None:
    docs = tmp_path / "BENCHMARKS.md"
    docs.write_text("# Benchmarks\n\n## Sandbox\n\nold sandbox\n\n## Generation (embedded backend)"
                    "\n\nold figures\n\n## Training\n\ntraining figures\n")
    write_section(docs, "## Generation (embedded backend)\n\nnew figures\n")
    text = docs.read_text()
    assert "new figures" in text and "old figures" not in text
    assert text.index("## Sandbox") < text.index("new figures") < text.index("## Training")
    assert "old sandbox" in text and "training figures" in text
