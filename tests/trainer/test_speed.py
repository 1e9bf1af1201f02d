"""The training benchmark runs end to end on a tiny model (figures are not asserted: speed
belongs in docs/BENCHMARKS.md, not in tests)."""

from __future__ import annotations

from pathlib import Path

import pytest

from trainer.speed import measure


@pytest.mark.parametrize("loop", ["bare", "trainer", "previous"])
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


def test_the_previous_loop_is_the_padded_path(tiny_model: Path, triples_file: Path,
                                              tmp_path: Path) -> None:
    import json

    from trainer.events import read_events

    measure("previous", {"data": str(triples_file), "out": str(tmp_path / "p"), "steps": 2,
                         "batch_size": 2, "base_model": str(tiny_model), "device": "cpu"})
    settings = json.loads((tmp_path / "p" / "manifest.json").read_text())["settings"]
    assert settings["packing"] is False and settings["reuse_memory"] is False
    assert settings["code_ratio"] == 0
    measure("trainer", {"data": str(triples_file), "out": str(tmp_path / "t"), "steps": 2,
                        "batch_size": 2, "base_model": str(tiny_model), "device": "cpu"})
    fast = json.loads((tmp_path / "t" / "manifest.json").read_text())["settings"]
    assert fast["packing"] is True and fast["reuse_memory"] is True
    # both paths trained on the very same tokens
    tokens = [[e["tokens"] for e in read_events(tmp_path / d / "events.jsonl")
               if e["event"] == "step"] for d in ("p", "t")]
    assert tokens[0] == tokens[1]


def test_speedups_compare_medians_with_the_loops_replaced() -> None:
    from service.cli.bench_train import speedups

    def row(loop: str, rate: float, cpu: float) -> dict:
        return {"loop": loop, "tokens_per_s": rate, "tokens_per_cpu_s": cpu}

    results = [row("previous", 10, 5), row("trainer", 30, 12), row("previous", 20, 6),
               row("trainer", 35, 9), row("previous", 12, 4), row("trainer", 40, 15),
               row("trainer+code", 9, 9), row("bare", 50, 50), row("trainer-fp32", 25, 10)]
    # medians: previous 12 / 5, trainer 35 / 12; trainer+code has no twin in this run
    assert speedups(results) == {
        "trainer vs previous": {"tokens_per_s": 2.92, "tokens_per_cpu_s": 2.4},
        "trainer vs trainer-fp32": {"tokens_per_s": 1.4, "tokens_per_cpu_s": 1.2}}


def test_the_fp32_loop_is_the_packed_path_in_float32(tiny_model: Path, triples_file: Path,
                                                     tmp_path: Path) -> None:
    import json

    result = measure("trainer-fp32", {"data": str(triples_file), "out": str(tmp_path / "f"),
                                      "steps": 2, "batch_size": 2,
                                      "base_model": str(tiny_model), "device": "cpu"})
    settings = json.loads((tmp_path / "f" / "manifest.json").read_text())["settings"]
    assert settings["packing"] is True and settings["precision"] == "fp32"
    assert result.loop == "trainer-fp32" and result.precision == "fp32"
