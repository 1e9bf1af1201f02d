"""Heterogeneous feedback -> labels, preference pairs, and a high-quality, diverse subset.

Sandbox outcomes and external feedback arrive normalised (``reward``, ``score`` in [0, 1], text,
``source``, ``task_id``). Selection is two filters, each reported: a quality threshold on the
score, then diversity — the instructions are clustered (TF-IDF or embeddings, k-means) and
records are drawn round-robin across clusters until ``keep_fraction`` of them is kept, so a few
over-sampled tasks cannot crowd out the rest.
"""

from __future__ import annotations

import math
import random
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any, Literal

from trainer.data import Triple

Embedder = Callable[[list[str]], Any]  # texts -> array (n, d)


@dataclass
class SelectionConfig:
    """How to pick the training subset from heterogeneous feedback."""

    min_score: float = field(default=0.0, metadata={
        "help": "Quality threshold: drop records whose normalised score is below it (keep 0 for "
                "LETI, which learns from failures too)."})
    keep_fraction: float = field(default=1.0, metadata={
        "help": "Fraction of the records above the threshold to keep, drawn evenly across "
                "instruction clusters."})
    clusters: int | None = field(default=None, metadata={
        "help": "Number of instruction clusters (default: about sqrt(unique instructions / 2))."})
    cluster_by: Literal["tfidf", "embeddings"] = field(default="tfidf", metadata={
        "help": "Represent instructions by TF-IDF (character n-grams), or by the base model's "
                "mean hidden state."})
    pair_margin: float = field(default=0.0, metadata={
        "help": "Preference pairs need chosen.score - rejected.score > this margin."})
    max_pairs_per_task: int = field(default=8, metadata={"help": "Cap on pairs from one task."})
    seed: int = field(default=0, metadata={"help": "Seeds k-means and the draw."})

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_score <= 1.0:
            raise ValueError("min_score must be in [0, 1]")
        if not 0.0 < self.keep_fraction <= 1.0:
            raise ValueError("keep_fraction must be in (0, 1]")
        if self.clusters is not None and self.clusters < 1:
            raise ValueError("clusters must be at least 1")
        if self.cluster_by not in ("tfidf", "embeddings"):
            raise ValueError("cluster_by must be 'tfidf' or 'embeddings'")

    @property
    def active(self) -> bool:
        return self.min_score > 0 or self.keep_fraction < 1


@dataclass(frozen=True)
class PreferencePair:
    """Two rated programs for one task, the better one first."""

    task_id: str
    chosen: Triple
    rejected: Triple

    def to_dict(self) -> dict[str, Any]:
        return {"task_id": self.task_id, "instruction": self.chosen.instruction,
                "chosen": self.chosen.program, "rejected": self.rejected.program,
                "chosen_score": self.chosen.score, "rejected_score": self.rejected.score,
                "chosen_source": self.chosen.source, "rejected_source": self.rejected.source}


def preference_pairs(records: Sequence[Triple], *, margin: float = 0.0,
                     max_per_task: int = 8) -> list[PreferencePair]:
    """Pairs from tasks with several rated samples, the higher score preferred."""
    by_task: dict[str, list[Triple]] = defaultdict(list)
    for r in records:
        by_task[r.task_id].append(r)
    pairs: list[PreferencePair] = []
    for task_id in sorted(by_task):
        group = sorted(by_task[task_id], key=lambda r: -r.score)
        found = [PreferencePair(task_id, a, b) for a, b in combinations(group, 2)
                 if a.score - b.score > margin and a.program.strip() != b.program.strip()]
        found.sort(key=lambda p: -(p.chosen.score - p.rejected.score))
        pairs.extend(found[:max_per_task])
    return pairs


@dataclass
class ClusterReport:
    cluster: int
    size: int
    kept: int
    top_terms: list[str]
    example: str


@dataclass
class SelectionReport:
    """What was kept and why (written to ``selection.json``)."""

    total: int
    below_threshold: int
    above_threshold: int
    dropped_for_diversity: int
    kept: int
    kept_by_source: dict[str, int]
    kept_by_reward: dict[str, int]
    clusters: list[ClusterReport]
    preference_pairs: int
    config: dict[str, Any]


def cluster_instructions(texts: Sequence[str], k: int, *, method: str = "tfidf",
                         embed: Embedder | None = None,
                         seed: int = 0) -> tuple[list[int], list[list[str]]]:
    """(cluster label per text, top terms per cluster); k-means on TF-IDF or embeddings."""
    from sklearn.cluster import KMeans
    from sklearn.feature_extraction.text import TfidfVectorizer

    k = max(1, min(k, len(set(texts))))
    words = TfidfVectorizer(stop_words="english", max_features=4096)
    try:
        tfidf = words.fit_transform(texts)  # for naming the clusters
    except ValueError:  # only stop words: fall back to every token
        words = TfidfVectorizer(max_features=4096)
        tfidf = words.fit_transform(texts)
    if method == "embeddings":
        if embed is None:
            raise ValueError("cluster_by='embeddings' needs an embedder (the trainer passes the "
                             "base model's); use cluster_by='tfidf' otherwise")
        features = embed(list(texts))
    else:  # character n-grams: 'matrix' and 'matrices' share most of their features
        features = TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5), sublinear_tf=True,
                                   max_features=20000).fit_transform(texts)
    labels = KMeans(n_clusters=k, random_state=seed, n_init=10).fit_predict(features)
    terms = words.get_feature_names_out()
    tops: list[list[str]] = []
    for c in range(k):
        rows = [i for i, label in enumerate(labels) if label == c]
        weights = tfidf[rows].sum(axis=0).A1 if rows else []
        order = sorted(range(len(weights)), key=lambda j: -weights[j])[:5]
        tops.append([str(terms[j]) for j in order if weights[j] > 0])
    return [int(x) for x in labels], tops


def select(records: Sequence[Triple], config: SelectionConfig, *,
           embed: Embedder | None = None) -> tuple[list[Triple], SelectionReport]:
    """Threshold by score, then draw evenly across instruction clusters; returns the kept
    records (in a seeded order) and the report."""
    above = [r for r in records if r.score >= config.min_score]
    pairs = preference_pairs(records, margin=config.pair_margin,
                             max_per_task=config.max_pairs_per_task)
    if not above:
        raise ValueError(f"no record has score >= {config.min_score}: lower --min-score")
    unique = sorted({r.instruction for r in above})
    k = config.clusters or max(1, round(math.sqrt(len(unique) / 2)))
    labels, tops = cluster_instructions(unique, k, method=config.cluster_by, embed=embed,
                                        seed=config.seed)
    cluster_of = dict(zip(unique, labels))
    rng = random.Random(config.seed)
    members: dict[int, list[Triple]] = defaultdict(list)
    for r in above:
        members[cluster_of[r.instruction]].append(r)
    for group in members.values():
        rng.shuffle(group)
    target = max(1, math.ceil(config.keep_fraction * len(above)))
    kept: list[Triple] = []
    taken: Counter[int] = Counter()
    while len(kept) < target:  # round-robin: one from each cluster per round
        for c in sorted(members):
            if taken[c] < len(members[c]) and len(kept) < target:
                kept.append(members[c][taken[c]])
                taken[c] += 1
    clusters = [ClusterReport(c, len(members[c]), taken[c], tops[c],
                              next(iter(members[c])).instruction[:120]) for c in sorted(members)]
    report = SelectionReport(
        total=len(records), below_threshold=len(records) - len(above),
        above_threshold=len(above), dropped_for_diversity=len(above) - len(kept), kept=len(kept),
        kept_by_source=dict(Counter(r.source for r in kept)),
        kept_by_reward=dict(Counter(r.reward.value for r in kept)), clusters=clusters,
        preference_pairs=len(pairs),
        config={f: getattr(config, f) for f in config.__dataclass_fields__})
    return kept, report


def model_embedder(model: Any, tokenizer: Any, *, batch_size: int = 8) -> Embedder:
    """Mean-pooled last hidden states of ``model``: instruction embeddings without a new model."""

    def embed(texts: list[str]) -> Any:
        import torch

        device = next(model.parameters()).device
        rows = []
        with torch.no_grad():
            for i in range(0, len(texts), batch_size):
                enc = tokenizer(texts[i:i + batch_size], return_tensors="pt", padding=True,
                                truncation=True, max_length=256).to(device)
                hidden = model(**enc, output_hidden_states=True).hidden_states[-1]
                mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                rows.append(((hidden * mask).sum(1) / mask.sum(1)).float().cpu())
        return torch.cat(rows).numpy()

    return embed
