"""The dtype quality check's reading (paired difference, identical programs, the verdict and its
markdown) and ``leti bench dtype``'s refusal of bad options before any model is loaded."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from service.experiment.dtype_check import DtypeCheck, DtypeRun, compare, markdown_section


def _run(dtype: str, passed: list[bool], programs: list[str]) -> DtypeRun:
    ids = [f"mbpp/{11 + i}" for i in range(len(passed))]
    return DtypeRun(dtype, dict(zip(ids, passed, strict=True)),
                    dict(zip(ids, programs, strict=True)), tokens=100, seconds=2.0)


def test_compare_pairs_problems_and_counts_identical_programs() -> None:
    ref = _run("float32", [True, True, False, False] * 10, ["a", "b", "c", "d"] * 10)
    same = _run("bfloat16", [True, True, False, False] * 10, ["a", "b", "x", "d"] * 10)
    worse = _run("float16", [False, False, False, False] * 10, ["a"] * 40)
    kept, lost = compare(ref, same), compare(ref, worse)
    assert kept.difference.difference == 0 and kept.passes and kept.identical == 30
    assert lost.difference.difference == pytest.approx(-0.5) and not lost.passes
    assert lost.difference.ci_high < 0 and lost.identical == 10 and lost.problems == 40

    section = markdown_section(DtypeCheck(40, "test", 256, "cpu", [ref, same, worse],
                                          [kept, lost]), "m", "2026-01-01", "tiny")
    assert section.startswith("## Dtype quality check")
    assert "| bfloat16 | 20/40 (50.0%) |" in section and "| 30/40 | yes |" in section
    assert "| float16 | 0/40 (0.0%) |" in section and "| 10/40 | no |" in section


@pytest.mark.parametrize(("args", "message"), [
    (["--problems", "1"], "at least 2"),
    (["--candidates", "float8"], "unknown dtype"),
    (["--candidates", " , "], "at least one dtype"),
])
def test_bench_dtype_refuses_bad_options_before_loading(args: list[str], message: str) -> None:
    from service.cli.bench import app

    result = CliRunner().invoke(app, ["dtype", *args, "--no-docs"])
    assert result.exit_code == 2 and message in result.output, result.output
