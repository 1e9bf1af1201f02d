"""The fast path's decode loop: continuous batching over a ``SlotCache`` with ``FastLlama``.

Same contract and sampling rules as ``sampling.sample_batch`` (the reference path): per-row
seeded generators, the same token choice, stop sequences found on the decoded tail, EOS and
length limits. What differs is how rows are scheduled:

* the prefix every prompt shares (chat template, task lead-in) is prefilled once and copied;
  each prompt is then prefilled once, straight into a slot, and its ``n`` samples start from
  copies of that slot;
* a waiting prompt joins as soon as there are slots for its samples, between two decode steps,
  so the batch stays full while there is work; a finished row leaves at once and the last live
  row takes its slot (``SlotCache.move``), so no step spends arithmetic on finished rows.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

from service.generation.compute import Steps, blocking
from service.generation.decode_batch import Guard, shared_prefix
from service.generation.fast_llama import FastLlama
from service.generation.sampling import PREFILL_TOKENS, RawSample, SampleRows
from service.generation.slot_cache import SlotCache
from service.generation.token_choice import choose_tokens
from service.generation.types import SamplingParams


@dataclass
class SchedulerStats:
    """Where the slot-time of one request went (for the benchmark's report)."""

    steps: int = 0
    row_steps: int = 0  # live rows summed over decode steps: the useful slot-time
    slot_steps: int = 0  # max_rows summed over decode steps: all slot-time
    prefill_tokens: int = 0
    occupancy: list[int] = field(default_factory=list)

    @property
    def busy_share(self) -> float:
        return self.row_steps / self.slot_steps if self.slot_steps else 0.0

    def count_step(self, live: int, slots: int) -> None:
        """One decode step over ``live`` rows of ``slots``."""
        self.steps += 1
        self.row_steps += live
        self.slot_steps += slots
        self.occupancy.append(live)


def sample_fast_steps(engine: FastLlama, weights: Any, tokenizer: Any, prompts: list[str],
                      params: SamplingParams, seeds: list[list[int]],
                      encode_kwargs: dict[str, bool], guard: Guard = nullcontext,
                      prefill_tokens: int = PREFILL_TOKENS, max_rows: int = 64,
                      stats: SchedulerStats | None = None) -> Steps[list[list[RawSample]]]:
    """``len(seeds[i])`` samples of prompt ``i`` (``seeds[i][j]`` seeds sample ``j``), at most
    ``max_rows`` decoding together; yields before every forward pass (``compute.Steps``), which
    runs inside ``guard()``."""
    import torch

    req = SampleRows.of(engine.model, tokenizer, prompts, params, seeds, encode_kwargs,
                        engine.max_positions, engine.device)
    stats = stats if stats is not None else SchedulerStats()
    max_rows = max(1, min(max_rows, len(req.generators)))
    group_size = min(max(req.counts), max_rows)
    cache = SlotCache(engine.num_layers, max_rows, max_rows, engine.kv_heads, engine.q_heads,
                      engine.head_dim, max(len(t) for t in req.token_lists),
                      params.max_new_tokens, group_size, engine.dtype, engine.device)
    waiting = _waiting_groups(req, group_size)
    rows: list[int] = []  # row slot -> sample id
    logits: list[Any] = []  # next-token logits of the row slots in order, [rows, vocab] parts
    prefix = yield from _prefill_prefix(engine, weights, req.token_lists, guard, prefill_tokens,
                                        stats)

    def admit() -> Steps[None]:
        """Prefill waiting prompts into free slots (each once, its samples sharing it)."""
        while waiting and len(rows) + len(waiting[-1][1]) <= max_rows:
            i, ids = waiting.pop()
            group = cache.groups
            last = yield from _prefill_group(engine, weights, req.token_lists[i], cache, group,
                                             prefix, guard, prefill_tokens, stats)
            cache.groups += 1
            cache.add_rows(group, len(ids))
            rows.extend(ids)
            logits.append(last[None].expand(len(ids), -1))

    yield from admit()
    while rows:
        chosen = choose_tokens(logits[0] if len(logits) == 1 else torch.cat(logits), params,
                               [req.generators[r] for r in rows],
                               [req.tokens[r] for r in rows]).tolist()
        order = cache.keep(req.advance(tokenizer, rows, chosen, params))
        rows[:] = [rows[s] for s in order]
        logits = []
        if rows:
            stats.count_step(len(rows), max_rows)
            next_tokens = torch.tensor([chosen[s] for s in order], device=engine.device)
            yield
            with torch.inference_mode(), guard():
                logits = [engine.decode(weights, next_tokens, cache)]
        yield from admit()
    return req.samples(tokenizer, params)


def _waiting_groups(req: SampleRows, group_size: int) -> list[tuple[int, list[int]]]:
    """Each prompt's samples in groups of at most ``group_size`` rows sharing one prefill,
    last first: popped from the end, prompts come in order."""
    waiting = [(i, ids[k:k + group_size]) for i in range(len(req.counts))
               for ids in [req.prompt_rows(i)] for k in range(0, req.counts[i], group_size)]
    waiting.reverse()
    return waiting


@dataclass
class _Prefix:
    cache: SlotCache | None
    tokens: int


def _prefill_prefix(engine: FastLlama, weights: Any, token_lists: list[list[int]], guard: Guard,
                    prefill_tokens: int, stats: SchedulerStats) -> Steps[_Prefix]:
    """The tokens every prompt starts with, prefilled once into a one-group cache."""
    import torch

    shared = shared_prefix(token_lists)
    if not shared:
        return _Prefix(None, 0)
    cache = SlotCache(engine.num_layers, 1, 1, engine.kv_heads, engine.q_heads, engine.head_dim,
                      shared, 1, 1, engine.dtype, engine.device)
    first = token_lists[0][:shared]
    for start in range(0, shared, prefill_tokens):
        yield
        with torch.inference_mode(), guard():
            engine.prefill(weights, first[start:start + prefill_tokens], cache, 0, start)
    stats.prefill_tokens += shared
    return _Prefix(cache, shared)


def _prefill_group(engine: FastLlama, weights: Any, tokens: list[int], cache: SlotCache,
                   group: int, prefix: _Prefix, guard: Guard, prefill_tokens: int,
                   stats: SchedulerStats) -> Steps[Any]:
    """Prefill one prompt into ``group`` (after the shared prefix); its last logits."""
    import torch

    start = 0
    if prefix.cache is not None:
        cache.copy_prompt(prefix.cache, 0, group, prefix.tokens)
        start = prefix.tokens
    last = None
    for begin in range(start, len(tokens), prefill_tokens):
        yield
        with torch.inference_mode(), guard():
            last = engine.prefill(weights, tokens[begin:begin + prefill_tokens], cache, group,
                                  begin)
    stats.prefill_tokens += len(tokens) - start
    assert last is not None  # shared_prefix always leaves at least one token per prompt
    return last


sample_fast = blocking(sample_fast_steps)
