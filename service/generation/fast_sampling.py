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
from service.generation.sampling import (
    RawSample,
    _choose,
    _eos_ids,
    _final_text,
    advance_rows,
    encode_request,
)
from service.generation.slot_cache import SlotCache
from service.generation.types import FinishReason, SamplingParams


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


def sample_fast_steps(engine: FastLlama, weights: Any, tokenizer: Any, prompts: list[str],
                      params: SamplingParams, seeds: list[list[int]],
                      encode_kwargs: dict[str, bool], guard: Guard = nullcontext,
                      prefill_tokens: int = 64, max_rows: int = 64,
                      stats: SchedulerStats | None = None) -> Steps[list[list[RawSample]]]:
    """``len(seeds[i])`` samples of prompt ``i`` (``seeds[i][j]`` seeds sample ``j``), at most
    ``max_rows`` decoding together; yields before every forward pass (``compute.Steps``), which
    runs inside ``guard()``."""
    import torch

    counts, token_lists = encode_request(tokenizer, prompts, params, seeds, encode_kwargs,
                                         engine.max_positions)
    prompt_tokens = [len(t) for t in token_lists]
    stats = stats if stats is not None else SchedulerStats()
    eos_ids = _eos_ids(engine.model, tokenizer)
    window = 4 * max((len(s) for s in params.stop), default=0) + 2
    device = engine.device
    generators = [torch.Generator(device=device).manual_seed(s) for row in seeds for s in row]
    starts = [sum(counts[:i]) for i in range(len(prompts))]
    total = len(generators)
    max_rows = max(1, min(max_rows, total))
    group_size = min(max(counts), max_rows)
    tokens: list[list[int]] = [[] for _ in generators]
    finish: list[FinishReason] = ["length"] * total
    cache = SlotCache(engine.num_layers, max_rows, max_rows, engine.kv_heads, engine.q_heads,
                      engine.head_dim, max(prompt_tokens), params.max_new_tokens, group_size,
                      engine.dtype, device)
    # Each prompt's samples in groups of at most group_size rows sharing one prefill.
    waiting = [(i, ids[k:k + group_size]) for i in range(len(prompts))
               for ids in [list(range(starts[i], starts[i] + counts[i]))]
               for k in range(0, counts[i], group_size)]
    waiting.reverse()  # popped from the end: prompts in order
    rows: list[int] = []  # row slot -> sample id
    logits: list[Any] = []  # next-token logits of the row slots in order, [rows, vocab] parts
    prefix = yield from _prefill_prefix(engine, weights, token_lists, guard, prefill_tokens,
                                        stats)

    def admit() -> Steps[None]:
        """Prefill waiting prompts into free slots (each once, its samples sharing it)."""
        while waiting and len(rows) + len(waiting[-1][1]) <= max_rows:
            i, ids = waiting.pop()
            group = cache.groups
            last = yield from _prefill_group(engine, weights, token_lists[i], cache, group,
                                             prefix, guard, prefill_tokens, stats)
            cache.groups += 1
            cache.add_rows(group, len(ids))
            rows.extend(ids)
            logits.append(last[None].expand(len(ids), -1))

    yield from admit()
    while rows:
        chosen = _choose(logits[0] if len(logits) == 1 else torch.cat(logits), params, [generators[r] for r in rows],
                         [tokens[r] for r in rows]).tolist()
        live = advance_rows(tokenizer, rows, chosen, tokens, finish, params, eos_ids, window)
        order = cache.keep(live)
        rows[:] = [rows[s] for s in order]
        logits = []
        if rows:
            stats.steps += 1
            stats.row_steps += len(rows)
            stats.slot_steps += max_rows
            stats.occupancy.append(len(rows))
            next_tokens = torch.tensor([chosen[s] for s in order], device=device)
            yield
            with torch.inference_mode(), guard():
                logits = [engine.decode(weights, next_tokens, cache)]
        yield from admit()
    return [[RawSample(_final_text(tokenizer, tokens[starts[i] + j], eos_ids, params.stop),
                       prompt_tokens[i], len(tokens[starts[i] + j]), finish[starts[i] + j])
             for j in range(counts[i])] for i in range(len(prompts))]


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
