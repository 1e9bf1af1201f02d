"""A KV cache that grows in place: each step writes its keys and values into spare room.

transformers' ``DynamicLayer`` appends with ``torch.cat``, which copies the whole cache on every
forward pass: at tens of rows that copying outweighs the step's own arithmetic on a small CPU
(docs/BENCHMARKS.md has the measurements). Here each layer keeps a buffer with room to spare (half as
much again when full, so copies are amortised) and hands attention views of its filled part.
"""

from __future__ import annotations

from typing import Any

from transformers.cache_utils import DynamicCache, DynamicLayer

MIN_ROOM = 128  # tokens of spare room a buffer grows by at least


class GrowingLayer(DynamicLayer):
    """A ``DynamicLayer`` whose ``keys``/``values`` are views of larger buffers."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._key_buffer: Any = None
        self._value_buffer: Any = None
        self._length = 0

    def lazy_initialization(self, key_states: Any, value_states: Any) -> None:
        self.dtype, self.device = key_states.dtype, key_states.device
        self.is_initialized = True

    def _reserve(self, needed: int, like_keys: Any, like_values: Any) -> None:
        """Make room for ``needed`` tokens, keeping what is cached."""
        room = 0 if self._key_buffer is None else self._key_buffer.shape[-2]
        if needed <= room:
            return
        size = max(needed, room + room // 2, self._length + MIN_ROOM)
        batch, heads, _, dim = like_keys.shape
        keys = like_keys.new_empty((batch, heads, size, dim))
        values = like_values.new_empty((batch, heads, size, like_values.shape[-1]))
        if self._length:
            keys[:, :, :self._length].copy_(self._key_buffer[:, :, :self._length])
            values[:, :, :self._length].copy_(self._value_buffer[:, :, :self._length])
        self._key_buffer, self._value_buffer = keys, values

    def _expose(self) -> None:
        self.keys = self._key_buffer[:, :, :self._length]
        self.values = self._value_buffer[:, :, :self._length]

    def update(self, key_states: Any, value_states: Any, *args: Any,
               **kwargs: Any) -> tuple[Any, Any]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        new = key_states.shape[-2]
        self._reserve(self._length + new, key_states, value_states)
        self._key_buffer[:, :, self._length:self._length + new].copy_(key_states)
        self._value_buffer[:, :, self._length:self._length + new].copy_(value_states)
        self._length += new
        self._expose()
        return self.keys, self.values

    def get_seq_length(self) -> int:
        return self._length

    def reset(self) -> None:
        self._key_buffer = self._value_buffer = None
        self._length = 0
        super().reset()

    def crop(self, tokens_to_remove: int) -> None:
        if tokens_to_remove > 0:
            raise ValueError("crop takes a negative number of tokens to remove")
        if tokens_to_remove == 0 or not self.is_initialized:
            return
        self._length = max(0, self._length + tokens_to_remove)
        self._expose()

    def _select_rows(self, index: Any) -> None:
        if self._key_buffer is None:
            return
        self._key_buffer = self._key_buffer.index_select(0, index)
        self._value_buffer = self._value_buffer.index_select(0, index)
        self._expose()

    def batch_select_indices(self, indices: Any) -> None:
        import torch

        index = indices if isinstance(indices, torch.Tensor) else torch.tensor(indices)
        self._select_rows(index.to(device=self.device, dtype=torch.long))

    def reorder_cache(self, beam_idx: Any) -> None:
        self._select_rows(beam_idx.to(self.device))

    def batch_repeat_interleave(self, repeats: int) -> None:
        if self._key_buffer is None:
            return
        self._key_buffer = self._key_buffer.repeat_interleave(repeats, dim=0)
        self._value_buffer = self._value_buffer.repeat_interleave(repeats, dim=0)
        self._expose()

    def replace(self, keys: Any, values: Any) -> None:
        """Hold exactly these keys and values (e.g. two batches' caches padded and stacked)."""
        self._key_buffer, self._value_buffer, self._length = keys, values, keys.shape[-2]
        self.dtype, self.device, self.is_initialized = keys.dtype, keys.device, True
        self._expose()


def growing_cache(config: Any) -> DynamicCache:
    """A ``DynamicCache`` for ``config`` whose full-attention layers grow in place. Layers of
    other kinds (sliding windows) keep transformers' own implementation."""
    cache = DynamicCache(config=config)
    cache.layers = [GrowingLayer() if type(layer) is DynamicLayer else layer
                    for layer in cache.layers]
    return cache


def cloned(cache: Any, config: Any) -> Any:
    """A growing cache that starts as a copy of ``cache`` (e.g. a prompt prefix they share)."""
    copy: Any = growing_cache(config)
    for mine, theirs in zip(copy.layers, cache.layers, strict=True):
        mine.replace(theirs.keys.clone(), theirs.values.clone())
    return copy
