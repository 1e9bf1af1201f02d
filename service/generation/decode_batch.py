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


def _left_padded(token_lists: list[list[int]], pad_id: int, device: Any) -> tuple[Any, Any]:
    import torch

    width = max(len(t) for t in token_lists)
    ids = torch.tensor([[pad_id] * (width - len(t)) + t for t in token_lists], device=device)
    mask = torch.tensor([[0] * (width - len(t)) + [1] * len(t) for t in token_lists],
                        device=device)
    return ids, mask


class DecodeBatch:
    """Rows decoded together (see the module docstring); ``rows`` are the caller's row ids."""

    def __init__(self, rows: list[int], cache: Any, mask: Any, last_pos: Any,
                 logits: Any) -> None:
        self.rows, self.cache, self.mask, self.last_pos, self.logits = (
            rows, cache, mask, last_pos, logits)

    @classmethod
    def prefill(cls, model: Any, token_lists: list[list[int]], counts: list[int],
                rows: list[int], pad_id: int, guard: Guard, prefill_tokens: int) -> DecodeBatch:
        """Prefill distinct prompts (``counts[i]`` rows each): the prefix they share once, then
        the rest left-padded, in slices of about ``prefill_tokens`` tokens; then fan out."""
        import torch
        from transformers import DynamicCache

        device = model.device
        cache = DynamicCache(config=model.config)
        shared = shared_prefix(token_lists)
        ids, suffix_mask = _left_padded([t[shared:] for t in token_lists], pad_id, device)
        mask = torch.cat([suffix_mask.new_ones((len(token_lists), shared)), suffix_mask], dim=-1)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)[:, shared:]
        with torch.inference_mode():
            if shared:  # the chat template and task lead-in, common to every prompt: once
                with guard():
                    model(input_ids=torch.tensor([token_lists[0][:shared]], device=device),
                          position_ids=torch.arange(shared, device=device)[None],
                          past_key_values=cache, use_cache=True, logits_to_keep=1)
                cache.batch_select_indices(torch.zeros(len(token_lists), dtype=torch.long,
                                                       device=device))
            width = max(1, prefill_tokens // len(token_lists))
            for start in range(0, ids.shape[1], width):
                end = start + width
                with guard():
                    out = model(input_ids=ids[:, start:end], attention_mask=mask[:, :shared + end],
                                position_ids=positions[:, start:end], past_key_values=cache,
                                use_cache=True, logits_to_keep=1)
        logits, last_pos = out.logits[:, -1, :].float(), positions[:, -1:]
        if len(rows) > len(token_lists):  # each prompt prefilled once, its samples fanned out
            fan = torch.repeat_interleave(torch.arange(len(token_lists), device=device),
                                          torch.tensor(counts, device=device))
            cache.batch_select_indices(fan)
            logits, mask, last_pos = logits[fan], mask[fan], last_pos[fan]
        return cls(rows, cache, mask, last_pos, logits)

    def keep(self, index: list[int]) -> None:
        """Keep only the rows at these batch positions (finished rows leave cache and all)."""
        import torch

        if len(index) == len(self.rows):
            return
        at = torch.tensor(index, dtype=torch.long, device=self.mask.device)
        self.cache.batch_select_indices(at)
        self.mask, self.last_pos, self.logits = self.mask[at], self.last_pos[at], self.logits[at]
        self.rows = [self.rows[i] for i in index]

    def step(self, model: Any, tokens: Any, guard: Guard) -> None:
        """Feed one chosen token per row; ``logits`` become the next ones."""
        import torch

        self.mask = torch.cat([self.mask, self.mask.new_ones((len(self.rows), 1))], dim=-1)
        self.last_pos = self.last_pos + 1
        with torch.inference_mode(), guard():
            out = model(input_ids=tokens[:, None], attention_mask=self.mask,
                        position_ids=self.last_pos, past_key_values=self.cache, use_cache=True)
        self.logits = out.logits[:, -1, :].float()

    def can_absorb(self) -> bool:
        """Only plain growing caches can be padded and joined (not sliding-window ones)."""
        from transformers.cache_utils import DynamicLayer

        return all(type(layer) is DynamicLayer for layer in self.cache.layers)

    def absorb(self, other: DecodeBatch) -> None:
        """Take ``other``'s rows in: left-pad the shorter cache and mask, then stack."""
        import torch
        import torch.nn.functional as F

        width = max(self.mask.shape[1], other.mask.shape[1])

        def padded(x: Any, length: int) -> Any:  # left-pad dim -2 (KV) to `width`
            return F.pad(x, (0, 0, width - length, 0)) if length < width else x

        mine, theirs = self.mask.shape[1], other.mask.shape[1]
        for a, b in zip(self.cache.layers, other.cache.layers, strict=True):
            a.keys = torch.cat([padded(a.keys, mine), padded(b.keys, theirs)], dim=0)
            a.values = torch.cat([padded(a.values, mine), padded(b.values, theirs)], dim=0)
        self.mask = torch.cat([F.pad(self.mask, (width - mine, 0)),
                               F.pad(other.mask, (width - theirs, 0))], dim=0)
        self.last_pos = torch.cat([self.last_pos, other.last_pos], dim=0)
        self.logits = torch.cat([self.logits, other.logits], dim=0)
        self.rows = self.rows + other.rows
