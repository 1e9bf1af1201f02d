"""The fast path's ragged attention kernel: built here, equal to masked attention, refusing
what it cannot read, and a clear fallback where it cannot be built."""

from __future__ import annotations

import logging

import pytest

from tests.generation.conftest import attention_inputs, masked

torch = pytest.importorskip("torch")


@pytest.mark.parametrize("head_dim", [16, 64, 6])  # 6: no whole vector of floats, only tails
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_the_ragged_kernel_is_attention_over_each_rows_own_columns(dtype: str,
                                                                   head_dim: int) -> None:
    """The CPU kernel reads each entry up to its length and gives the same output and
    log-sum-exp as masked attention in plain operations, from a slice of a wider buffer too."""
    from service.generation.attention_parts import plain_attention_part
    from service.generation.ragged_attention import kernel

    ragged = kernel()
    assert ragged is not None, "the kernel must build here (scripts/install.sh installs g++ and ninja)"
    kind = getattr(torch, dtype)
    q, keys, values, lengths = attention_inputs(kind, head_dim, queries=12)
    tolerance = 1e-5 if dtype == "float32" else 2e-2
    for width in (80, 70):  # the whole buffer, and a slice of it (strided batch entries)
        out, lse = ragged.ragged_attention(q, keys[:, :, :width], values[:, :, :width],
                                           lengths.clamp(max=width), 0.25)
        expected = plain_attention_part(q, keys[:, :, :width], values[:, :, :width],
                                        masked(lengths, width, kind), 0.25)
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
    q, keys, values, lengths = attention_inputs(torch.float32, 16)
    with pytest.raises(RuntimeError, match="share a dtype"):
        ragged.ragged_attention(q, keys.double(), values, lengths, 0.25)
    with pytest.raises(RuntimeError, match="contiguous last dimension"):
        strided = torch.cat([keys, keys], dim=-1)[..., ::2]  # every other float of a row
        ragged.ragged_attention(q, strided, strided, lengths, 0.25)
    with pytest.raises(RuntimeError, match="lengths must be int64"):
        ragged.ragged_attention(q, keys, values, lengths.int(), 0.25)


def test_a_prior_is_continued_exactly() -> None:
    """The kernel continuing a prior part's (output, log-sum-exp) gives the attention over
    both parts' keys; an entry whose prior saw nothing (-inf) starts empty."""
    from service.generation.ragged_attention import kernel

    ragged = kernel()
    assert ragged is not None
    q, keys, values, lengths = attention_inputs(torch.float32, 16, queries=3)
    first = ragged.ragged_attention(q, keys[:, :, :30], values[:, :, :30],
                                    lengths.clamp(max=30), 0.25)
    prior_lse = first[1].clone()
    prior_lse[1] = float("-inf")  # entry 1: as if the first part held nothing for it
    out, lse = ragged.ragged_attention(q, keys[:, :, 30:], values[:, :, 30:], lengths - 30, 0.25,
                                       first[0], prior_lse)
    whole = ragged.ragged_attention(q, keys, values, lengths, 0.25)
    keep = torch.tensor([0, 2, 3, 4])
    assert torch.allclose(out[keep], whole[0][keep], atol=1e-5)
    assert torch.allclose(lse[keep], whole[1][keep], atol=1e-5)
    alone = ragged.ragged_attention(q[1:2], keys[1:2, :, 30:], values[1:2, :, 30:],
                                    lengths[1:2] - 30, 0.25)
    assert torch.allclose(out[1:2], alone[0], atol=1e-6)
    with pytest.raises(RuntimeError, match="prior out must be shaped"):
        ragged.ragged_attention(q, keys, values, lengths, 0.25, first[0][:, :, :2], first[1])


def test_without_a_compiler_the_fast_path_falls_back_and_says_why(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    from service.generation import ragged_attention

    def no_compiler() -> None:
        raise RuntimeError("Error building extension: g++ not found")

    monkeypatch.setattr(ragged_attention, "_loaded", {})
    monkeypatch.setattr(ragged_attention, "build", no_compiler)
    with caplog.at_level(logging.WARNING):
        assert ragged_attention.kernel() is None
        assert ragged_attention.kernel() is None  # settled: not retried, said once
    said = [r.getMessage() for r in caplog.records if "ragged attention" in r.getMessage()]
    assert len(said) == 1 and "g++ not found" in said[0] and "masked columns" in said[0]
