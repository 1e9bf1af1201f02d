"""The fast path's cache buffers: widths that follow the span in chunks, contents kept."""

from __future__ import annotations

from typing import Any

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


def _masked(lengths: Any, width: int, dtype: Any) -> Any:
    """The additive mask over ``width`` columns that ``lengths`` stands for, [B, 1, 1, width]."""
    mask = torch.where(torch.arange(width)[None] < lengths[:, None], 0.0, float("-inf"))
    return mask.to(dtype)[:, None, None]


def _parts(dtype: Any, head_dim: int, queries: int = 2) -> tuple[Any, Any, Any, Any]:
    gen = torch.Generator().manual_seed(0)
    q, keys, values = (torch.randn(shape, generator=gen).to(dtype)
                       for shape in ((5, 3, queries, head_dim), (5, 3, 80, head_dim),
                                     (5, 3, 80, head_dim)))
    # lengths across block edges (the kernel reads 32 columns at a time) and past column 20
    return q, keys, values, torch.tensor([21, 33, 80, 64, 47])


@pytest.mark.parametrize("head_dim", [16, 64, 6])  # 6: no whole vector of floats, only tails
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_the_ragged_kernel_is_attention_over_each_rows_own_columns(dtype: str,
                                                                   head_dim: int) -> None:
    """The CPU kernel reads each entry up to its length and gives the same output and
    log-sum-exp as masked attention in plain operations, from a slice of a wider buffer too."""
    from service.generation.ragged_attention import kernel
    from service.generation.slot_cache import plain_attention_part

    ragged = kernel()
    assert ragged is not None, "the kernel must build here (scripts/install.sh installs g++ and ninja)"
    kind = getattr(torch, dtype)
    q, keys, values, lengths = _parts(kind, head_dim, queries=12)
    tolerance = 1e-5 if dtype == "float32" else 2e-2
    for width in (80, 70):  # the whole buffer, and a slice of it (strided batch entries)
        out, lse = ragged.ragged_attention(q, keys[:, :, :width], values[:, :, :width],
                                           lengths.clamp(max=width), 0.25)
        expected = plain_attention_part(q, keys[:, :, :width], values[:, :, :width],
                                        _masked(lengths, width, kind), 0.25)
        assert out.dtype == kind and lse.dtype == torch.float32
        assert torch.allclose(out.float(), expected[0].float(), atol=tolerance)
        assert torch.allclose(lse, expected[1], atol=tolerance)
    # Columns past an entry's length are never read: NaN there changes nothing.
    poisoned = keys.clone()
    poisoned[0, :, 21:] = float("nan")
    out, _ = ragged.ragged_attention(q, poisoned, values, lengths, 0.25)
    assert torch.equal(out, ragged.ragged_attention(q, keys, values, lengths, 0.25)[0])
    # An entry with no columns: zeros and a log-sum-exp of -inf (it merges with weight 0).
    out, lse = ragged.ragged_attention(q, keys, values, torch.tensor([0, 1, 2, 3, 4]), 0.25)
    assert not out[0].any() and torch.isinf(lse[0]).all() and (lse[0] < 0).all()


def test_the_kernel_refuses_what_it_cannot_read() -> None:
    from service.generation.ragged_attention import kernel

    ragged = kernel()
    assert ragged is not None
    q, keys, values, lengths = _parts(torch.float32, 16)
    with pytest.raises(RuntimeError, match="share a dtype"):
        ragged.ragged_attention(q, keys.double(), values, lengths, 0.25)
    with pytest.raises(RuntimeError, match="contiguous last dimension"):
        strided = torch.cat([keys, keys], dim=-1)[..., ::2]  # every other float of a row
        ragged.ragged_attention(q, strided, strided, lengths, 0.25)
    with pytest.raises(RuntimeError, match="lengths must be int64"):
        ragged.ragged_attention(q, keys, values, lengths.int(), 0.25)


@pytest.mark.parametrize("ragged", [True, False])
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_attention_parts_merge_into_the_softmax_over_both(dtype: str, ragged: bool,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """``attention_part`` (the ragged kernel, or ATen's fused kernel over masked columns where
    the kernel cannot be built) gives attention over each entry's columns, and merging two
    parts by their log-sum-exp is the softmax over both (what ``attend`` relies on)."""
    from service.generation import slot_cache

    if not ragged:
        monkeypatch.setattr(slot_cache, "kernel", lambda: None)
    kind = getattr(torch, dtype)
    q, keys, values, lengths = _parts(kind, 16)
    tolerance = 1e-5 if dtype == "float32" else 2e-2
    whole = torch.nn.functional.scaled_dot_product_attention(
        q.float(), keys.float(), values.float(), attn_mask=_masked(lengths, 80, torch.float32),
        scale=0.25)
    one = slot_cache.attention_part(q, keys, values, lengths, 0.25)
    assert torch.allclose(one[0].float(), whole, atol=tolerance)
    # Split the keys at column 20; merging the parts gives the attention over all of them.
    a = slot_cache.attention_part(q, keys[:, :, :20], values[:, :, :20], lengths.clamp(max=20),
                                  0.25)
    b = slot_cache.attention_part(q, keys[:, :, 20:].contiguous(), values[:, :, 20:].contiguous(),
                                  lengths - 20, 0.25)
    share = torch.sigmoid(a[1] - b[1]).unsqueeze(-1)
    merged = torch.lerp(b[0].float(), a[0].float(), share)
    assert torch.allclose(merged, whole, atol=tolerance)


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
