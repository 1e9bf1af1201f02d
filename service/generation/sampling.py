"""Batched sampling for a decoder-only model on a KV cache: the embedded backend's decode loop.

Written out instead of calling ``model.generate`` for four reasons: each row draws from its own
seeded generator (no other row consumes its randomness, so seeded requests repeat); stop
sequences are found on the decoded tail, so token counts and the cut are exact; rows that finish
leave the batch and waiting rows take their place (``DecodeBatch``), so the batch stays full
until the request runs out of rows; and prefill is shared: the token prefix all prompts share
(chat template, task lead-in) once, each distinct prompt once for its ``n`` samples.
"""

from __future__ import annotations

import hashlib
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

from service.generation.compute import Steps, blocking
from service.generation.decode_batch import DecodeBatch, Guard
from service.generation.types import FinishReason, SamplingParams

# Below this temperature sampling is greedy, as in vLLM (its _SAMPLING_EPS): dividing the logits
# by a temperature such as 5e-324 overflows them to inf and the softmax to NaN.
GREEDY_BELOW = 1e-5


@dataclass
class RawSample:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: FinishReason


def row_seed(seed: int, prompt_index: int, sample_index: int) -> int:
    """The seed for sample ``j`` of prompt ``i``: stable across runs and processes."""
    digest = hashlib.blake2b(f"{seed}:{prompt_index}:{sample_index}".encode(), digest_size=8)
    return int.from_bytes(digest.digest(), "big") >> 1


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


def _choose(logits: Any, params: SamplingParams, generators: list[Any],
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


def encode_request(tokenizer: Any, prompts: list[str], params: SamplingParams,
                   seeds: list[list[int]], encode_kwargs: dict[str, bool],
                   context: int | None) -> tuple[list[int], list[list[int]]]:
    """(samples per prompt, prompt token ids), after checking the request fits: a seed per
    sample, no empty prompt, prompt + ``max_new_tokens`` within ``context``. Both decode paths
    use it, so they refuse the same requests."""
    counts = [len(row) for row in seeds]
    if len(counts) != len(prompts) or min(counts, default=1) < 1:
        raise ValueError("seeds must hold at least one seed per prompt")
    token_lists = tokenizer(prompts, **encode_kwargs)["input_ids"]
    prompt_tokens = [len(t) for t in token_lists]
    if min(prompt_tokens) < 1:
        raise ValueError("a prompt encodes to no tokens")
    if context is not None and max(prompt_tokens) + params.max_new_tokens > context:
        raise ValueError(f"prompt of {max(prompt_tokens)} tokens + max_new_tokens "
                         f"{params.max_new_tokens} exceeds the model's context of {context}")
    return counts, token_lists


def _stop_hit(tokenizer: Any, tokens: list[int], stops: tuple[str, ...], window: int) -> bool:
    tail = tokenizer.decode(tokens[-window:], skip_special_tokens=False)
    return any(s in tail for s in stops)


def advance_rows(tokenizer: Any, rows: list[int], chosen: list[int], tokens: list[list[int]],
                 finish: list[FinishReason], params: SamplingParams, eos_ids: set[int],
                 window: int) -> list[int]:
    """Append each row's chosen token; the positions (in ``rows``) of those that go on. A row
    ends on EOS or a stop sequence ("stop", the rule both decode paths share) or at
    ``max_new_tokens`` (its finish reason stays "length")."""
    going = []
    for slot, (r, tok) in enumerate(zip(rows, chosen, strict=True)):
        tokens[r].append(tok)
        if tok in eos_ids or (params.stop and _stop_hit(tokenizer, tokens[r], params.stop, window)):
            finish[r] = "stop"
        elif len(tokens[r]) < params.max_new_tokens:
            going.append(slot)
    return going


def _final_text(tokenizer: Any, tokens: list[int], eos_ids: set[int], stops: tuple[str, ...]) -> str:
    if tokens and tokens[-1] in eos_ids:
        tokens = tokens[:-1]
    text = tokenizer.decode(tokens, skip_special_tokens=True)
    cuts = [i for i in (text.find(s) for s in stops) if i >= 0]
    return text[:min(cuts)] if cuts else text


def sample_batch_steps(model: Any, tokenizer: Any, prompts: list[str], params: SamplingParams,
                       seeds: list[list[int]], encode_kwargs: dict[str, bool],
                       guard: Guard = nullcontext, prefill_tokens: int = 64,
                       max_rows: int | None = None) -> Steps[list[list[RawSample]]]:
    """``len(seeds[i])`` samples of prompt ``i`` (``seeds[i][j]`` seeds sample ``j``); yields
    before each forward pass (``compute.Steps``).

    At most ``max_rows`` rows decode together; when a quarter of them have finished, waiting
    rows are prefilled and join (``DecodeBatch``). ``max_rows=1`` is the plain one-at-a-time
    loop. Every forward pass runs inside ``guard()``: the embedded backend takes its model lock
    and activates this request's adapter there, so adapters can be loaded between two passes;
    each prompt is prefilled in passes of at most ``prefill_tokens`` tokens so no pass is long."""
    import torch

    counts, token_lists = encode_request(tokenizer, prompts, params, seeds, encode_kwargs,
                                         getattr(model.config, "max_position_embeddings", None))
    prompt_tokens = [len(t) for t in token_lists]
    eos_ids = _eos_ids(model, tokenizer)
    window = 4 * max((len(s) for s in params.stop), default=0) + 2
    device = model.device
    generators = [torch.Generator(device=device).manual_seed(s) for row in seeds for s in row]
    starts = [sum(counts[:i]) for i in range(len(prompts))]
    tokens: list[list[int]] = [[] for _ in generators]
    finish: list[FinishReason] = ["length"] * len(generators)
    waiting = [(i, list(range(starts[i], starts[i] + counts[i]))) for i in range(len(prompts))]
    max_rows = max_rows or len(generators)

    def admit(room: int) -> Steps[DecodeBatch]:
        groups = []
        while waiting and room > 0:
            i, rows = waiting[0]
            groups.append((i, rows[:room]))
            waiting[0] = (i, rows[room:])
            room -= len(groups[-1][1])
            if not waiting[0][1]:
                waiting.pop(0)
        return (yield from DecodeBatch.prefill(model, [token_lists[i] for i, _ in groups],
                                               [len(rows) for _, rows in groups],
                                               [r for _, rows in groups for r in rows], guard,
                                               prefill_tokens))

    batch = yield from admit(max_rows)
    joinable = batch.can_absorb()
    while batch.rows:
        chosen = _choose(batch.logits, params, [generators[r] for r in batch.rows],
                         [tokens[r] for r in batch.rows])
        keep = advance_rows(tokenizer, batch.rows, chosen.tolist(), tokens, finish, params,
                            eos_ids, window)
        batch.keep(keep)
        if keep:
            yield from batch.step(model, chosen[torch.tensor(keep, device=chosen.device)], guard)
        free = max_rows - len(batch.rows)
        if waiting and (not batch.rows or (joinable and free >= max(1, max_rows // 4))):
            joining = yield from admit(free)
            if batch.rows:
                batch.absorb(joining)
            else:
                batch = joining
    return [[RawSample(_final_text(tokenizer, tokens[starts[i] + j], eos_ids, params.stop),
                       prompt_tokens[i], len(tokens[starts[i] + j]), finish[starts[i] + j])
             for j in range(counts[i])] for i in range(len(prompts))]


def _eos_ids(model: Any, tokenizer: Any) -> set[int]:
    ids: set[int] = set()
    for source in (getattr(model, "generation_config", None), model.config):
        value = getattr(source, "eos_token_id", None)
        if value is not None:
            ids.update(value if isinstance(value, (list, tuple)) else [value])
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    return ids


sample_batch = blocking(sample_batch_steps)
