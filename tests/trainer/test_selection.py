"""Heterogeneous feedback: labels, preference pairs, threshold and cluster-balanced selection."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from trainer.data import Triple
from trainer.selection import SelectionConfig, preference_pairs, select

TOPICS = {
    "strings": ["Write a function to reverse the words of a string sentence.",
                "Write a function to count vowels in a string of text.",
                "Write a function to remove spaces from a string sentence.",
                "Write a function to capitalise each word of a string text."],
    "matrices": ["Write a function to multiply two square matrices of integers.",
                 "Write a function to transpose a matrix given as nested lists.",
                 "Write a function to compute the trace of a square matrix.",
                 "Write a function to add two matrices element by element."],
    "primes": ["Write a function to check whether a number is prime.",
               "Write a function to list prime numbers below a limit.",
               "Write a function to find the largest prime factor of a number.",
               "Write a function to count the prime divisors of a number."],
}


def record(task: str, instruction: str, score: float, source: str = "external",
           program: str = "") -> Triple:
    return Triple(task_id=task, kind="user", instruction=instruction,
                  program=program or f"def f():\n    return {score!r}",
                  reward="good" if score >= 0.5 else "bad",  # type: ignore[arg-type]
                  feedback="rated", score=score, source=source)


def corpus(per_instruction: dict[str, int] | None = None) -> list[Triple]:
    """Every instruction of every topic, with rated samples; ``per_instruction`` over-samples."""
    out = []
    for topic, instructions in TOPICS.items():
        for i, text in enumerate(instructions):
            n = (per_instruction or {}).get(topic, 5)
            for j in range(n):
                score = round(0.1 + 0.8 * (j % 5) / 4, 2)  # 0.1, 0.3, 0.5, 0.7, 0.9
                out.append(record(f"user/{topic}-{i}", text, score=score,
                                  source="sandbox" if j % 2 else "external"))
    return out


def test_threshold_is_respected_and_reported() -> None:
    records = corpus()
    kept, report = select(records, SelectionConfig(min_score=0.5))
    assert kept and all(r.score >= 0.5 for r in kept)
    assert report.below_threshold == sum(r.score < 0.5 for r in records)
    assert report.kept == len(kept) == report.above_threshold  # keep_fraction 1: all above


def test_every_cluster_is_covered_even_when_one_topic_dominates() -> None:
    records = corpus({"strings": 30})  # strings: 120 of 160
    kept, report = select(records, SelectionConfig(keep_fraction=0.15, clusters=3, seed=0))
    assert len(kept) == pytest.approx(0.15 * len(records), abs=1)
    assert len(report.clusters) == 3 and all(c.kept > 0 for c in report.clusters)
    topics = Counter(r.task_id.split("/")[1].split("-")[0] for r in kept)
    assert set(topics) == set(TOPICS)
    assert topics["strings"] <= len(kept) / 3 + 1  # drawn evenly, not in proportion (75%)
    assert report.dropped_for_diversity == len(records) - len(kept)


def test_clusters_follow_the_topics() -> None:
    records = corpus()
    _, report = select(records, SelectionConfig(clusters=3, seed=0))
    assert sorted(c.size for c in report.clusters) == [20, 20, 20]
    terms = {t for c in report.clusters for t in c.top_terms}
    assert {"string", "matrix", "prime"} <= {t.rstrip("s") for t in terms}


def test_embedding_clustering_uses_the_given_embedder() -> None:
    seen: list[list[str]] = []

    def embed(texts: list[str]) -> np.ndarray:
        seen.append(texts)
        return np.array([[1.0, 0.0] if "prime" in t else [0.0, 1.0] for t in texts])

    _, report = select(corpus(), SelectionConfig(clusters=2, cluster_by="embeddings",
                                                    keep_fraction=0.25), embed=embed)
    assert seen and len(seen[0]) == 12  # unique instructions
    assert sorted(c.size for c in report.clusters) == [20, 40]
    assert sorted(c.kept for c in report.clusters) == [7, 8]  # 15 kept, alternating clusters


def test_threshold_that_removes_everything_says_so() -> None:
    with pytest.raises(ValueError, match="min-score"):
        select([record("t", "Write x.", 0.2)], SelectionConfig(min_score=0.9))


def test_preference_pairs_prefer_the_higher_score_within_a_task() -> None:
    records = [record("a", "Write a.", 0.9, program="p1"), record("a", "Write a.", 0.2,
               program="p2"), record("a", "Write a.", 0.6, program="p3"),
               record("b", "Write b.", 0.7, program="q1")]  # one sample: no pair
    pairs = preference_pairs(records)
    assert {(p.chosen.program, p.rejected.program) for p in pairs} == \
        {("p1", "p2"), ("p1", "p3"), ("p3", "p2")}
    assert all(p.task_id == "a" for p in pairs)
    assert [(p.chosen.program, p.rejected.program) for p in
            preference_pairs(records, margin=0.5)] == [("p1", "p2")]
