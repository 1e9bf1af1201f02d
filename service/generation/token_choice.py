"""One token per row, the rule both decode paths share: greedy at temperature ~0, else
temperature + nucleus (top-p) sampling, each row drawing from its own seeded generator, after the
repetition penalty.

The nucleus is found without sorting the whole vocabulary: only the tokens near each row's best
are ranked, unless they hold less than ``top_p`` of the row's mass.
"""

from __future__ import annotations

import math
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
    scaled = logits.to(torch.float32, copy=True).div_(params.temperature)  # one pass, one copy
    block_max = _block_max(scaled)
    top = block_max.amax(-1, keepdim=True)
    # log of each row's softmax sum (torch.logsumexp's own arithmetic, reusing the maximum)
    log_total = (scaled - top).exp_().sum(-1, keepdim=True).log_().add_(top)
    draws = torch.stack([torch.rand((), generator=g, device=scaled.device) for g in generators])
    spans = torch.full_like(top, math.inf if params.top_p >= 1 else _CANDIDATE_SPANS[0])
    ranked = _sorted_tokens(scaled, log_total, *_candidates(scaled, block_max, top, spans))
    for span in (*_CANDIDATE_SPANS[1:], math.inf) if params.top_p < 1 else ():
        short = ranked.row_mass < params.top_p
        if not bool(short.any()):
            break
        # The candidates hold less than top_p of these rows' mass: widen theirs (last: all).
        spans[short] = span
        ranked = _sorted_tokens(scaled, log_total, *_candidates(scaled, block_max, top, spans))
    return _draw(ranked.nucleus(params.top_p), draws)


# A row's candidates: the tokens at most this far below its best scaled logit (6: probability
# ratio e**-6), and only where those hold less than top_p of the row's mass, the ones within the
# next span (12: ~6e-6), then all its tokens. The nucleus is the most likely tokens up to top_p,
# so it lies among any most-likely tokens that hold top_p: the first span that holds it gives the
# same nucleus as ranking the whole row, with few tokens to rank (docs/GENERATION.md).
_CANDIDATE_SPANS = (6.0, 12.0)
# Tokens per block of the vocabulary in the candidate search: a row's candidates are looked for
# only in the blocks whose maximum is within its span, so no pass over the whole
# [rows, vocabulary] makes a mask or lists its true entries.
_BLOCK = 256


def _block_max(scaled: Any) -> Any:
    """Each row's maximum in each block of ``_BLOCK`` tokens (the last block may be short)."""
    import torch

    rows, vocab = scaled.shape
    whole = vocab - vocab % _BLOCK
    block_max = scaled[:, :whole].view(rows, whole // _BLOCK, _BLOCK).amax(-1)
    if whole < vocab:
        block_max = torch.cat([block_max, scaled[:, whole:].amax(-1, keepdim=True)], 1)
    return block_max


def _candidates(scaled: Any, block_max: Any, top: Any, spans: Any) -> tuple[Any, Any]:
    """(rows, tokens) of the tokens within each row's span of its best, row-major with tokens
    ascending (the order ``_sorted_tokens`` ranks from)."""
    import torch

    vocab = scaled.shape[1]
    floor = top - spans  # [rows, 1]
    block_rows, blocks = (block_max >= floor).nonzero(as_tuple=True)
    tokens = blocks[:, None] * _BLOCK + torch.arange(_BLOCK, device=scaled.device)[None]
    inside = tokens < vocab
    tokens = tokens.clamp_(max=vocab - 1)
    keep = inside & (scaled[block_rows[:, None], tokens] >= floor[block_rows])
    return block_rows[:, None].expand_as(tokens)[keep], tokens[keep]


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


def _sorted_tokens(scaled: Any, log_total: Any, rows: Any, tokens: Any) -> _Ranked:
    """Rank the candidates (``rows``, ``tokens``; row-major) of each row by probability."""
    import torch

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
