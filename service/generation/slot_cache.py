"""The fast path's KV cache: prompts kept once per group of samples, generated tokens per row.

The ``n`` samples of one prompt share that prompt's keys and values, so they are stored once,
in a *group* slot (``[groups, kv_heads, prompt_capacity, head_dim]`` per layer), and each row
keeps only the tokens it generated, in a *row* slot (``[rows, kv_heads, new_capacity,
head_dim]``). A decode step attends in two parts and merges them exactly (the softmax of a
concatenation, from each part's log-sum-exp): every group's prompt against the queries of all
its rows at once (one call reads the prompt's keys once for ``n`` rows), then each row against
its own tokens. Each part is given how many columns each entry holds (``attention_part``): the
ragged kernel reads only those, the other kernels mask the rest. Prompts and rows start at
column 0 (no padding), so a row's position is its prompt's length plus its own.

Live rows occupy row slots ``0 .. rows-1`` and live groups group slots ``0 .. groups-1``: when a
row (or a whole group) finishes, the last live one moves into its slot, one row's cache copied
and never the batch's. Buffers start zeroed: a masked column is still multiplied (by a zero
weight), so it must never hold NaN.
"""

from __future__ import annotations

from typing import Any

from service.generation.attention_parts import Span, attention_part


class SlotCache:
    """Prompt keys/values per group and generated keys/values per row, for every layer."""

    def __init__(self, layers: int, groups: int, rows: int, kv_heads: int, q_heads: int,
                 head_dim: int, prompt_capacity: int, new_capacity: int, group_size: int,
                 dtype: Any, device: Any) -> None:
        import torch

        zeros = torch.zeros
        # Prompt slots grow by 8 groups: a group per row is the most that can be live (each
        # group down to its last row), but a request usually holds about rows / n of them, and
        # every growth of the columns allocates (and zeroes) all the slots.
        self.prompt = _Columns(layers, groups, kv_heads, head_dim, prompt_capacity, dtype, device,
                               chunk=64, shrink=False, slot_chunk=8)
        self.own = _Columns(layers, rows, kv_heads, head_dim, new_capacity, dtype, device,
                            chunk=32, shrink=True)
        self.prompt_lengths = zeros(groups, dtype=torch.long, device=device)
        self.lengths = zeros(rows, dtype=torch.long, device=device)  # generated tokens cached
        self.group_of = zeros(rows, dtype=torch.long, device=device)
        self.member_of = zeros(rows, dtype=torch.long, device=device)
        self.kv_heads, self.rep, self.head_dim = kv_heads, q_heads // kv_heads, head_dim
        self.group_size, self.new_capacity = group_size, new_capacity
        self.prompt_capacity = prompt_capacity
        self._index = torch.arange(rows, device=device)
        self.rows = 0  # live rows
        self.groups = 0  # live groups

    # -- prefill ---------------------------------------------------------------------------------
    def write_prompt(self, layer: int, group: int, start: int, k: Any, v: Any
                     ) -> tuple[Any, Any]:
        """Store ``k``/``v`` [tokens, kv_heads, head_dim] at ``start``.. of ``group``'s prompt;
        return its keys and values up to there, [1, kv_heads, end, head_dim]."""
        end = start + k.shape[0]
        if end > self.prompt_capacity:
            raise ValueError(f"prompt of {end} tokens exceeds the cache's {self.prompt_capacity}")
        if layer == 0:
            self.prompt.fit(max(end, self._live_prompt_span()), self.groups + 1)
        keys, values = self.prompt.keys[layer], self.prompt.values[layer]
        keys[group, :, start:end] = k.transpose(0, 1)
        values[group, :, start:end] = v.transpose(0, 1)
        return keys[group:group + 1, :, :end], values[group:group + 1, :, :end]

    def copy_prompt(self, source: SlotCache, source_group: int, group: int, tokens: int) -> None:
        """Start ``group``'s prompt with the first ``tokens`` of ``source``'s ``source_group``
        (the prefix every prompt shares)."""
        self.prompt.fit(max(tokens, self._live_prompt_span()), self.groups + 1)
        for mine, theirs in ((self.prompt.keys, source.prompt.keys),
                             (self.prompt.values, source.prompt.values)):
            for layer, buffer in enumerate(mine):
                buffer[group, :, :tokens] = theirs[layer][source_group, :, :tokens]

    def add_rows(self, group: int, count: int) -> None:
        """``count`` new rows (members 0..count-1) of ``group``, with nothing generated yet."""
        import torch

        start, self.rows = self.rows, self.rows + count
        self.lengths[start:self.rows] = 0
        self.group_of[start:self.rows] = group
        self.member_of[start:self.rows] = torch.arange(count, device=self.lengths.device)

    # -- decode ----------------------------------------------------------------------------------
    def step_spans(self) -> tuple[Span, Span]:
        """Fit the buffers to this step's spans and return how many columns each part holds:
        the prompt's per live group and the own tokens per live row, this step's token
        included."""
        rows, groups = self.rows, self.groups
        prompt_lengths, own = self.prompt_lengths[:groups], self.lengths[:rows] + 1
        own_span = int(own.max())
        if own_span > self.new_capacity:
            raise ValueError(f"a row outgrew the cache's {self.new_capacity} new tokens")
        self.prompt.fit(int(prompt_lengths.max()), groups)
        self.own.fit(own_span, rows)
        return (Span(prompt_lengths, self.prompt.width, self.prompt.dtype),
                Span(own, self.own.width, self.own.dtype))

    def _live_prompt_span(self) -> int:
        return int(self.prompt_lengths[:self.groups].max()) if self.groups else 0

    def attend(self, layer: int, q: Any, k: Any, v: Any, spans: tuple[Span, Span],
               scale: float) -> Any:
        """Write this step's ``k``/``v`` [rows, kv_heads, head_dim] and attend with ``q``
        [rows, q_heads, head_dim] over prompt and own tokens; returns [rows, q_heads * head_dim]."""
        rows, groups, kv, rep, dim = self.rows, self.groups, self.kv_heads, self.rep, self.head_dim
        index, positions = self._index[:rows], self.lengths[:rows]
        self.own.keys[layer][index, :, positions] = k
        self.own.values[layer][index, :, positions] = v
        q = q.view(rows, kv, rep, dim)
        # Prompt part: the queries of each group's rows side by side, [groups, kv, size*rep, dim].
        grouped = q.new_zeros((groups, self.group_size, kv, rep, dim))
        grouped[self.group_of[:rows], self.member_of[:rows]] = q
        grouped = grouped.permute(0, 2, 1, 3, 4).reshape(groups, kv, self.group_size * rep, dim)
        # Whole buffers (contiguous: no copy before the matmuls); the spans say how far each
        # entry is used.
        p_keys, p_values = self.prompt.keys[layer][:groups], self.prompt.values[layer][:groups]
        # [groups, kv, size*rep, dim] and its log-sum-exp [groups, kv, size*rep]
        p_out, p_lse = attention_part(grouped, p_keys, p_values, spans[0], scale)
        back = (self.group_of[:rows], slice(None), self.member_of[:rows])
        p_out = p_out.view(groups, kv, self.group_size, rep, dim)[back]  # [rows, kv, rep, dim]
        p_lse = p_lse.view(groups, kv, self.group_size, rep)[back]
        # Own part: each row against the tokens it generated, continuing the prompt part's
        # softmax: the attention over both, exactly.
        o_keys, o_values = self.own.keys[layer][:rows], self.own.values[layer][:rows]
        out, _ = attention_part(q, o_keys, o_values, spans[1], scale, prior=(p_out, p_lse))
        return out.reshape(rows, kv * rep * dim)

    def positions(self) -> Any:
        """Each live row's position for this step's token: its prompt's length plus its own."""
        return self.prompt_lengths[self.group_of[:self.rows]] + self.lengths[:self.rows]

    def advance(self) -> None:
        self.lengths[:self.rows] += 1

    # -- leaving ---------------------------------------------------------------------------------
    def keep(self, live: list[int]) -> list[int]:
        """Keep only the rows at ``live`` (ascending slots); free groups left without rows.
        Returns the new order: ``order[s]`` is the old slot of the row now in slot ``s``."""
        import torch

        order = _compacted(live)
        moving = [(new, old) for new, old in enumerate(order) if new != old]
        if moving:
            dst = torch.tensor([m[0] for m in moving], device=self.lengths.device)
            src = torch.tensor([m[1] for m in moving], device=self.lengths.device)
            span = int(self.lengths[src].max())
            for buffers in (self.own.keys, self.own.values):
                for buffer in buffers:
                    buffer[dst, :, :span] = buffer[src, :, :span]
            for array in (self.lengths, self.group_of, self.member_of):
                array[dst] = array[src]
        self.rows = len(live)
        self._drop_empty_groups()
        return order

    def _drop_empty_groups(self) -> None:
        used = set(self.group_of[:self.rows].tolist())
        empty = [g for g in range(self.groups) if g not in used]
        if not empty:
            return
        order = _compacted([g for g in range(self.groups) if g in used])
        span = int(self.prompt_lengths[:self.groups].max())
        for new, old in enumerate(order):
            if new == old:
                continue
            for buffers in (self.prompt.keys, self.prompt.values):
                for buffer in buffers:
                    buffer[new, :, :span] = buffer[old, :, :span]
            self.prompt_lengths[new] = self.prompt_lengths[old]
            rows = self.group_of[:self.rows] == old
            self.group_of[:self.rows][rows] = new
        self.groups = len(order)
        self.prompt_lengths[self.groups:] = 0


class _Columns:
    """Keys and values per layer, [slots, kv_heads, width, head_dim], whose width follows the
    span in use in steps of ``chunk`` columns.

    Why: a batched matmul over a slice of a wider buffer copies it first (its batch stride is
    not the matrix's size), and at the model's shapes that copy cost more than the attention
    itself; the CPU's fused kernel takes the slice without a copy but ran up to 18% slower on it
    (docs/BENCHMARKS.md). So attention runs over the whole (contiguous) width (the ragged
    kernel reads each entry only to its length, the others mask the rest), and the buffers are
    reallocated when the span leaves its chunk (a copy every few chunks of tokens,
    not a copy per step). ``shrink``: also reallocate once two chunks sit unused (generated
    tokens, whose span falls when long rows finish); prompts are admitted shortest first, so
    their span only grows. Slots grow by ``slot_chunk`` (default: all at once) and never
    shrink."""

    def __init__(self, layers: int, slots: int, kv_heads: int, head_dim: int, capacity: int,
                 dtype: Any, device: Any, chunk: int, shrink: bool,
                 slot_chunk: int | None = None) -> None:
        self.layers, self.capacity, self.chunk, self.shrink = layers, capacity, chunk, shrink
        self.slot_capacity, self.slot_chunk = slots, slot_chunk or slots
        self.kv_heads, self.head_dim = kv_heads, head_dim
        self.dtype, self.device = dtype, device
        self.width = self.slots = 0
        self.keys: list[Any] = []
        self.values: list[Any] = []
        self.fit(1, 0)

    def fit(self, span: int, used: int) -> None:
        """Make the width hold ``span`` columns, and the slots ``used`` of them: grow to the next
        chunk of columns (or shrink, see the class) and of ``slot_chunk`` slots; the first
        ``used`` slots keep their contents."""
        import torch

        want = min(self.capacity, -(-max(span, 1) // self.chunk) * self.chunk)
        slots = max(self.slots, min(self.slot_capacity,
                                    -(-max(used, 1) // self.slot_chunk) * self.slot_chunk))
        if (slots == self.slots and self.width >= want
                and (not self.shrink or self.width - want < 2 * self.chunk)):
            return
        keep, held = min(self.width, want), min(used, self.slots)  # what to copy

        def resized(old: Any) -> Any:  # zeroed: masked columns must never hold NaN
            new = torch.zeros((slots, self.kv_heads, want, self.head_dim), dtype=self.dtype,
                              device=self.device)
            if held:
                new[:held, :, :keep] = old[:held, :, :keep]
            return new

        # Plain tensors even under inference mode (a prefill): the cache is also written
        # outside it (rows moving, prompts copied).
        with torch.inference_mode(False):
            self.keys = [resized(b) for b in self.keys or [None] * self.layers]
            self.values = [resized(b) for b in self.values or [None] * self.layers]
        self.width, self.slots = want, slots


def _compacted(live: list[int]) -> list[int]:
    """Slots after compaction: live slots below ``len(live)`` stay; the live ones above fill the
    holes below, in order. ``result[new] = old``."""
    keep = len(live)
    stay = {s for s in live if s < keep}
    movers = iter(s for s in live if s >= keep)
    return [s if s in stay else next(movers) for s in range(keep)]
