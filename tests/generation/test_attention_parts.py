"""One part of a decode step's attention: each kernel gives attention over each entry's own
columns, a prior is continued exactly, and a part's mask is built once per step."""

from __future__ import annotations

import pytest

from tests.generation.conftest import attention_inputs, masked

torch = pytest.importorskip("torch")


@pytest.mark.parametrize("ragged", [True, False])
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_attention_parts_merge_into_the_softmax_over_both(dtype: str, ragged: bool,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """``attention_part`` (the ragged kernel, or ATen's fused kernel over masked columns where
    the kernel cannot be built) gives attention over each entry's columns, and merging two
    parts by their log-sum-exp is the softmax over both (what ``attend`` relies on)."""
    from service.generation import attention_parts
    from service.generation.attention_parts import Span, attention_part

    if not ragged:
        monkeypatch.setattr(attention_parts, "kernel", lambda: None)
    kind = getattr(torch, dtype)
    q, keys, values, lengths = attention_inputs(kind, 16)
    tolerance = 1e-5 if dtype == "float32" else 2e-2
    whole = torch.nn.functional.scaled_dot_product_attention(
        q.float(), keys.float(), values.float(), attn_mask=masked(lengths, 80, torch.float32),
        scale=0.25)
    one = attention_part(q, keys, values, Span(lengths, 80, kind), 0.25)
    assert torch.allclose(one[0].float(), whole, atol=tolerance)
    # Split the keys at column 20: the second part continuing the first (its prior) is the
    # attention over all of them, and so is merging the two parts by their log-sum-exps.
    a = attention_part(q, keys[:, :, :20], values[:, :, :20], Span(lengths.clamp(max=20), 20, kind),
                       0.25)
    rest = (q, keys[:, :, 20:].contiguous(), values[:, :, 20:].contiguous(),
            Span(lengths - 20, 60, kind), 0.25)
    both = attention_part(*rest, prior=a)
    assert torch.allclose(both[0].float(), whole, atol=tolerance)
    assert torch.allclose(both[1], one[1], atol=tolerance)
    b = attention_part(*rest)
    share = torch.sigmoid(a[1] - b[1]).unsqueeze(-1)
    merged = torch.lerp(b[0].float(), a[0].float(), share)
    assert torch.allclose(merged, whole, atol=tolerance)


def test_a_spans_mask_covers_each_entrys_columns_and_is_built_once() -> None:
    """The masked kernels read the whole width: the mask is 0 on each entry's columns and -inf
    past them, in the buffer's dtype, and every layer of a step gets the same tensor."""
    from service.generation.attention_parts import Span

    lengths = torch.tensor([3, 1, 5])
    span = Span(lengths, 5, torch.bfloat16)
    assert span.mask.dtype == torch.bfloat16 and span.mask.shape == (3, 1, 1, 5)
    assert torch.equal(span.mask, masked(lengths, 5, torch.bfloat16))
    assert span.mask is span.mask
