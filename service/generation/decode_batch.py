"""The rows the embedded backend decodes together: one KV cache, its attention mask, each row's
last position and next-token logits. Rows leave when they finish and new rows can join (their
prompts prefilled apart, then both caches left-padded to one length), so the batch stays full
while a request has prompts waiting: continuous batching within a request.

Invariant: ``mask`` covers exactly the cached tokens; padding is always on the left, and
positions come from each row's own tokens, so padding never changes a row's answer.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from service.generation.compute import Steps
from service.generation.kv_cache import GrowingLayer, cloned, growing_cache

Guard = Callable[[], AbstractContextManager[Any]]


def shared_prefix(token_lists: list[list[int]], minimum: int = 8) -> int:
    """Tokens every prompt starts with (keeping at least one of each prompt to prefill)."""
    if len(token_lists) < 2:
        return 0
    shortest = min(len(t) for t in token_lists) - 1
    n = 0
    while n < shortest and all(t[n] == token_lists[0][n] for t in token_lists):
        n += 1
    return n if n >= minimum else 0


def _stack(caches: list[Any], lengths: list[int]) -> None:
    """Left-pad each cache's layers to the longest and stack them, into the first cache."""
    import torch
    import torch.nn.functional as F

    width = max(lengths)

    def padded(x: Any, length: int) -> Any:  # left-pad dim -2 (the tokens) to `width`
        return F.pad(x, (0, 0, width - length, 0)) if length < width else x

    for layers in zip(*(c.layers for c in caches), strict=True):
        layers[0].replace(
            torch.cat([padded(layer.keys, n) for layer, n in zip(layers, lengths)], dim=0),
            torch.cat([padded(layer.values, n) for layer, n in zip(layers, lengths)], dim=0))


def _left_padded_mask(lengths: list[int], device: Any) -> Any:
    import torch

    width = max(lengths)
    return torch.tensor([[0] * (width - n) + [1] * n for n in lengths], device=device)


class DecodeBatch:
    """Rows decoded together (see the module docstring); ``rows`` are the caller's row ids."""

    def __init__(self, rows: list[int], cache: Any, mask: Any, last_pos: Any,
                 logits: Any) -> None:
        self.rows, self.cache, self.mask, self.last_pos, self.logits = (
            rows, cache, mask, last_pos, logits)

    @classmethod
    def prefill(cls, model: Any, token_lists: list[list[int]], counts: list[int],
                rows: list[int], guard: Guard, prefill_tokens: int) -> Steps[DecodeBatch]:
        """Prefill distinct prompts (``counts[i]`` rows each): the prefix they share once, then
        each prompt on its own in passes of at most ``prefill_tokens`` tokens (no arithmetic
        on padding, and no pass is long); then stack the caches left-padded and fan out.
        Yields before each pass (``compute.Steps``)."""
        import torch

        device = model.device
        shared = shared_prefix(token_lists)
        prefix = growing_cache(model.config) if shared else None
        with torch.inference_mode():
            if shared:  # the chat template and task lead-in, common to every prompt: once
                yield
                with guard():
                    model(input_ids=torch.tensor([token_lists[0][:shared]], device=device),
                          position_ids=torch.arange(shared, device=device)[None],
                          past_key_values=prefix, use_cache=True, logits_to_keep=1)
            caches, logits = [], []
            for tokens in token_lists:
                cache = growing_cache(model.config) if prefix is None else cloned(prefix, model.config)
                for start in range(shared, len(tokens), prefill_tokens):
                    end = min(start + prefill_tokens, len(tokens))
                    yield
                    with guard():
                        out = model(input_ids=torch.tensor([tokens[start:end]], device=device),
                                    position_ids=torch.arange(start, end, device=device)[None],
                                    past_key_values=cache, use_cache=True, logits_to_keep=1)
                caches.append(cache)
                logits.append(out.logits[:, -1, :].float())
        lengths = [len(t) for t in token_lists]
        _stack(caches, lengths)
        cache, logits_ = caches[0], torch.cat(logits)
        mask = _left_padded_mask(lengths, device)
        last_pos = torch.tensor([[n - 1] for n in lengths], device=device)
        if len(rows) > len(token_lists):  # each prompt prefilled once, its samples fanned out
            fan = torch.repeat_interleave(torch.arange(len(token_lists), device=device),
                                          torch.tensor(counts, device=device))
            cache.batch_select_indices(fan)
            logits_, mask, last_pos = logits_[fan], mask[fan], last_pos[fan]
        return cls(rows, cache, mask, last_pos, logits_)

    def keep(self, index: list[int]) -> None:
        """Keep only the rows at these batch positions (finished rows leave cache and all)."""
        import torch

        if len(index) == len(self.rows):
            return
        at = torch.tensor(index, dtype=torch.long, device=self.mask.device)
        self.cache.batch_select_indices(at)
        self.mask, self.last_pos, self.logits = self.mask[at], self.last_pos[at], self.logits[at]
        self.rows = [self.rows[i] for i in index]

    def step(self, model: Any, tokens: Any, guard: Guard) -> Steps[None]:
        """Feed one chosen token per row; ``logits`` become the next ones (one step)."""
        import torch

        yield
        self.mask = torch.cat([self.mask, self.mask.new_ones((len(self.rows), 1))], dim=-1)
        self.last_pos = self.last_pos + 1
        with torch.inference_mode(), guard():
            out = model(input_ids=tokens[:, None], attention_mask=self.mask,
                        position_ids=self.last_pos, past_key_values=self.cache, use_cache=True)
        self.logits = out.logits[:, -1, :].float()

    def can_absorb(self) -> bool:
        """Only plain growing caches can be padded and joined (not sliding-window ones)."""
        return all(isinstance(layer, GrowingLayer) for layer in self.cache.layers)

    def absorb(self, other: DecodeBatch) -> None:
        """Take ``other``'s rows in: left-pad the shorter cache and mask, then stack."""
        import torch
        import torch.nn.functional as F

        mine, theirs = self.mask.shape[1], other.mask.shape[1]
        width = max(mine, theirs)
        _stack([self.cache, other.cache], [mine, theirs])
        self.mask = torch.cat([F.pad(self.mask, (width - mine, 0)),
                               F.pad(other.mask, (width - theirs, 0))], dim=0)
        self.last_pos = torch.cat([self.last_pos, other.last_pos], dim=0)
        self.logits = torch.cat([self.logits, other.logits], dim=0)
        self.rows = self.rows + other.rows
