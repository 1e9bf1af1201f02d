"""One token per row, the rule both decode paths share: greedy at temperature ~0, else
temperature + nucleus (top-p) sampling, each row drawing from its own seeded generator, after the
repetition penalty.

The nucleus is found without sorting the whole vocabulary: only the tokens near each row's best
are ranked, unless they hold less than ``top_p`` of the row's mass.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from service.generation.types import SamplingParams

# Below this temperature sampling is greedy, as in vLLM (its _SAMPLING_EPS): dividing the logits
# by a temperature such as 5e-324 overflows them to inf and the softmax to NaN.
GREEDY_BELOW = 1e-5


def penalise_repeats(logits: Any, generated: list[list[int]], penalty: float) -> Any:
    """``logits`` [rows, vocab] with each row's already generated tokens penalised (see
    ``SamplingParams.repetition_penalty``); unchanged at penalty 1 or before any token."""
    import torch

    if penalty == 1:
        return logits
    width = max((len(g) for g in generated), default=0)
    if width == 0:
        return logits
    ids = torch.tensor([g + [g[0] if g else 0] * (width - len(g)) for g in generated],
                       device=logits.device)
    seen = torch.tensor([[True] * len(g) + [False] * (width - len(g)) for g in generated],
                        device=logits.device)
    picked = logits.gather(1, ids)
    penalised = torch.where(picked > 0, picked / penalty, picked * penalty)
    out = logits.clone()
    # Padding repeats a row's first token (or writes token 0 back unchanged): the same value.
    out.scatter_(1, ids, torch.where(seen, penalised, picked))
    return out


def choose_tokens(logits: Any, params: SamplingParams, generators: list[Any],
                  generated: list[list[int]]) -> Any:
    """One token per row: greedy at temperature ~0, else temperature + nucleus (top-p) sampling,
    each row drawing from its own generator; ``generated`` (each row's tokens so far) for the
    repetition penalty."""
    import torch

    logits = penalise_repeats(logits, generated, params.repetition_penalty)
    if params.temperature < GREEDY_BELOW:
        return logits.argmax(-1)
    scaled = logits.float() / params.temperature
    log_total = torch.logsumexp(scaled, -1, keepdim=True)  # log of each row's softmax sum
    draws = torch.stack([torch.rand((), generator=g, device=scaled.device) for g in generators])
    if params.top_p >= 1:
        return _draw(_sorted_tokens(scaled, log_total, None), draws)
    candidates = scaled >= scaled.amax(-1, keepdim=True) - _CANDIDATE_SPAN
    ranked = _sorted_tokens(scaled, log_total, candidates)
    short = (ranked.row_mass < params.top_p).nonzero().flatten().tolist()
    if short:  # the candidates hold less than top_p of some row's mass: rank all its tokens
        everything = candidates.clone()
        everything[short] = True
        ranked = _sorted_tokens(scaled, log_total, everything)
    return _draw(ranked.nucleus(params.top_p), draws)


# Tokens more than this below a row's best scaled logit (probability ratio e**-12, ~6e-6) are
# ranked only when the tokens above hold less than top_p of the row's mass: the nucleus is the
# most likely tokens up to top_p, so it lies among any most-likely tokens that hold top_p.
_CANDIDATE_SPAN = 12.0


@dataclass
class _Ranked:
    """Candidate tokens of every row in one flat list: rows in order, each row's tokens most
    likely first, with their probabilities and the row's mass before each."""

    rows: Any  # [K] row of each entry
    tokens: Any  # [K]
    probs: Any  # [K]
    before: Any  # [K] mass of the row's more likely candidates
    starts: Any  # [rows] first entry of each row
    counts: Any  # [rows] entries of each row
    row_mass: Any  # [rows] mass of each row's candidates

    @classmethod
    def of(cls, rows: Any, tokens: Any, probs: Any, before: Any, row_count: int) -> _Ranked:
        """The flat list with each row's start, count and mass derived."""
        import torch

        counts = torch.bincount(rows, minlength=row_count)
        starts = counts.cumsum(0) - counts
        return cls(rows, tokens, probs, before, starts, counts,
                   (before + probs)[starts + counts - 1])

    def nucleus(self, top_p: float) -> _Ranked:
        """Each row's smallest most-likely prefix holding ``top_p`` (at least one token)."""
        keep = self.before < top_p
        return _Ranked.of(self.rows[keep], self.tokens[keep], self.probs[keep],
                          self.before[keep], len(self.counts))


def _sorted_tokens(scaled: Any, log_total: Any, candidates: Any | None) -> _Ranked:
    """Rank ``candidates`` (a [rows, vocab] mask; None: every token) by probability."""
    import torch

    if candidates is None:
        candidates = torch.ones_like(scaled, dtype=torch.bool)
    rows, tokens = candidates.nonzero(as_tuple=True)  # row-major: rows ascending
    probs = (scaled[rows, tokens] - log_total[rows, 0]).exp()
    order = torch.argsort(probs, descending=True, stable=True)
    order = order[torch.argsort(rows[order], stable=True)]  # by row, then most likely first
    rows, tokens, probs = rows[order], tokens[order], probs[order]
    exclusive = probs.cumsum(0) - probs  # global mass before each entry
    first = torch.ones_like(rows, dtype=torch.bool)
    first[1:] = rows[1:] != rows[:-1]  # each row's first entry
    row_base = torch.zeros(scaled.shape[0], dtype=probs.dtype, device=probs.device)
    row_base[rows[first]] = exclusive[first]
    return _Ranked.of(rows, tokens, probs, exclusive - row_base[rows], scaled.shape[0])


def _draw(ranked: _Ranked, draws: Any) -> Any:
    """Each row's token by inverse CDF: the first entry whose mass so far passes the row's
    uniform draw scaled to the row's mass."""
    import torch

    target = draws * ranked.row_mass
    passed = (ranked.before + ranked.probs) > target[ranked.rows]
    entries = torch.arange(len(ranked.rows), device=draws.device)
    last = ranked.starts + ranked.counts - 1
    first = last.clone().scatter_reduce_(0, ranked.rows[passed], entries[passed], "amin")
    return ranked.tokens[torch.minimum(first, last)]
