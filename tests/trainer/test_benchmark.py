"""The training benchmark runs end to end on a tiny model (figures are not asserted: speed
belongs in docs/BENCHMARKS.md, not in tests)."""

from __future__ import annotations

from pathlib import Path

import pytest

from trainer.benchmark import measure


@pytest.mark.parametrize("loop", ["bare", "trainer"])
def test_each_loop_reports_tokens_and_memory(loop: str, tiny_model: Path, triples_file: Path,
                                             tmp_path: Path) -> None:
    result = measure(loop, {"data": str(triples_file), "out": str(tmp_path / loop), "steps": 3,
                            "batch_size": 2, "base_model": str(tiny_model), "device": "cpu"})
    assert result.loop == loop and result.steps == 2
    assert result.tokens > 0 and result.tokens_per_s > 0 and result.tokens_per_cpu_s > 0
    assert result.peak_rss_mib > 0 and result.peak_gpu_mib is None


def test_bench_triples_pair_each_reference_with_a_broken_copy(mbpp_path: Path,
                                                              tmp_path: Path) -> None:
    from service.cli.bench_train import write_bench_triples
    from trainer.data import read_triples

    n = write_bench_triples(tmp_path / "t.jsonl", mbpp_path, 5)
    triples = read_triples(tmp_path / "t.jsonl")
    assert n == len(triples) == 10
    assert [t.reward.value for t in triples[:2]] == ["good", "bad"]
    assert "return None" in triples[1].program
