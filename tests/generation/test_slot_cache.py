"""The fast path's cache buffers: widths that follow the span in chunks, contents kept."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")


def test_columns_grow_and_shrink_by_chunks_keeping_the_used_slots() -> None:
    from service.generation.slot_cache import _Columns

    chunk = 32
    cols = _Columns(layers=2, slots=3, kv_heads=1, head_dim=2, capacity=5 * chunk,
                    dtype=torch.float32, device="cpu", chunk=chunk, shrink=True)
    assert cols.width == chunk and all(b.is_contiguous() for b in cols.keys + cols.values)
    for layer in range(2):
        cols.keys[layer][:, 0, :chunk] = torch.arange(3 * chunk * 2.0).view(3, chunk, 2)
    before = cols.keys[1][:2].clone()

    cols.fit(chunk + 1, used=2)  # one column past the first chunk: the next chunk
    assert cols.width == 2 * chunk and cols.keys[1].shape == (3, 1, 2 * chunk, 2)
    assert torch.equal(cols.keys[1][:2, :, :chunk], before)
    assert not cols.keys[1][2].any() and not cols.keys[1][:, :, chunk:].any()  # zeroed, not NaN

    cols.fit(5 * chunk + 7, used=2)  # never past the capacity
    assert cols.width == 5 * chunk
    cols.fit(4 * chunk, used=2)  # one unused chunk: kept (no copy for a small change)
    assert cols.width == 5 * chunk
    cols.fit(3, used=2)  # two or more unused chunks: shrink to the span's chunk
    assert cols.width == chunk and torch.equal(cols.keys[1][:2], before)


def test_columns_that_do_not_shrink_keep_their_width() -> None:
    from service.generation.slot_cache import _Columns

    cols = _Columns(layers=1, slots=2, kv_heads=1, head_dim=2, capacity=256,
                    dtype=torch.float32, device="cpu", chunk=64, shrink=False)
    cols.fit(130, used=1)
    assert cols.width == 192
    cols.fit(3, used=1)
    assert cols.width == 192


def test_slots_grow_by_their_chunk_keeping_the_used_ones() -> None:
    from service.generation.slot_cache import _Columns

    cols = _Columns(layers=1, slots=20, kv_heads=1, head_dim=2, capacity=64,
                    dtype=torch.float32, device="cpu", chunk=64, shrink=False, slot_chunk=8)
    assert cols.slots == 8 and cols.keys[0].shape[0] == 8
    cols.keys[0][:8] = 1.0
    cols.fit(10, used=9)  # a ninth slot wanted: the next chunk of slots, the first 9 kept
    assert cols.slots == 16 and cols.keys[0][:8].eq(1).all() and not cols.keys[0][8:].any()
    cols.fit(10, used=20)  # never past the capacity
    assert cols.slots == 20
    cols.fit(10, used=3)  # slots never shrink
    assert cols.slots == 20
