"""The promotion gate's paired decision on hand-made per-problem results: fewer solved is
refused, a paired interval below zero is refused, a tie or a gain is promoted, and a gate too
small to see the configured drop says so."""

from __future__ import annotations

import logging

import pytest

from service.loop.gate import detectable_drop, paired_decision


def figure(solved: set[int], n: int = 90) -> dict:
    ids = [f"mbpp/{511 + i}" for i in range(n)]
    return {"problems": ids, "pass_at_1": len(solved) / n,
            "results": {t: {"passed": i in solved, "status": "passed" if i in solved
                            else "failed", "error_type": None} for i, t in enumerate(ids)}}


def decide(candidate: set[int], serving: set[int], n: int = 90, **kw: float):  # type: ignore[no-untyped-def]
    options = {"margin": 0.0, "confidence": 0.95, "min_detectable": 0.05, **kw}
    return paired_decision(figure(candidate, n), figure(serving, n), **options)  # type: ignore[arg-type]


def test_a_candidate_that_solves_fewer_is_refused_with_its_table() -> None:
    serving = set(range(10))
    d = decide(serving - {3}, serving)
    assert d.promote is False and "solves fewer problems" in d.reason
    assert d.metrics["lost"] == ["mbpp/514"] and d.metrics["gained"] == []
    assert (d.metrics["candidate_solved"], d.metrics["serving_solved"]) == (9, 10)
    assert d.metrics["table"]["mbpp/514"] == [1, 0] and d.metrics["table"]["mbpp/511"] == [1, 1]
    assert len(d.metrics["table"]) == 90


def test_ties_and_gains_are_promoted_even_when_problems_swap() -> None:
    serving = set(range(10))
    assert decide(serving, serving).promote is True
    swapped = decide((serving - {0, 1}) | {50, 51, 52}, serving)  # 2 lost, 3 gained
    assert swapped.promote is True and swapped.metrics["difference"] == pytest.approx(1 / 90)
    assert "+3 -2" in swapped.reason


def test_within_the_margin_but_shown_worse_by_the_paired_interval_is_refused() -> None:
    serving = set(range(20))
    # a margin of 10% would allow 9 fewer; 6 lost and none gained is clearly worse
    d = decide(serving - set(range(6)), serving, margin=0.1)
    assert d.metrics["ci_high"] < 0 and d.promote is False
    assert "the paired interval shows it worse" in d.reason
    # 2 lost: inside the margin and not shown worse (the interval reaches 0)
    assert decide(serving - {0, 1}, serving, margin=0.1).promote is True


def test_the_smallest_drop_the_paired_test_can_see() -> None:
    assert detectable_drop(90, 0.95) == 4  # (86/90)^90 = 0.017 < 0.025 < (87/90)^90
    assert detectable_drop(10, 0.95) == 4  # 0.6^10 = 0.006 < 0.025 < 0.7^10 = 0.028
    assert detectable_drop(500, 0.95) == 4
    # and the bootstrap agrees: 4 of 90 lost is worse, 3 is not
    serving = set(range(30))
    assert decide(serving - {0, 1, 2, 3}, serving, margin=1.0).metrics["ci_high"] < 0
    assert decide(serving - {0, 1, 2}, serving, margin=1.0).metrics["ci_high"] >= 0


def test_a_gate_too_small_for_the_configured_drop_warns(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    small = decide({1}, {1}, n=10)
    assert small.warning is not None and "cannot show a drop smaller than 4 problems" in \
        small.warning and "raise LETI_GATE_PROBLEMS" in small.warning
    assert any("promotion gate" in r.getMessage() for r in caplog.records)
    assert small.metrics["warning"] == small.warning
    assert decide({1}, {1}, n=90).warning is None  # 4/90 = 4.4% < 5%
    assert decide({1}, {1}, n=90, min_detectable=0.02).warning is not None
