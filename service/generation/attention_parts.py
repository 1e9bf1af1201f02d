"""Attention over one part of a decode step's keys (a group's prompt, a row's own tokens), by
the kernel that suits it: ``SlotCache.attend`` runs two parts a step and joins them exactly.

A part is described by a ``Span``: how many columns each entry holds this step. The ragged
kernel reads only those; ATen's fused kernel and the plain operations read the buffer's whole
width through an additive mask, which a ``Span`` builds once for the step's 30-odd layers.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

from service.generation.ragged_attention import kernel

# The ragged kernel's cost grows with the queries per entry (a dot product each), the fused
# kernel's hardly (matrix units): past this many, the fused one is faster (docs/BENCHMARKS.md).
RAGGED_MAX_QUERIES = 6


@dataclass
class Span:
    """One part's columns this step: entry ``b`` uses the first ``lengths[b]`` of ``width``."""

    lengths: Any  # [entries] int64
    width: int  # the buffer's columns
    dtype: Any  # the buffer's dtype (the fused kernel takes its mask in it)

    @cached_property
    def mask(self) -> Any:
        """The additive mask over the whole width, [entries, 1, 1, width]: 0 on used columns,
        -inf past them. Built on first use, once per step."""
        import torch

        columns = torch.arange(self.width, device=self.lengths.device)
        return torch.zeros((), dtype=self.dtype, device=self.lengths.device).masked_fill(
            columns[None] >= self.lengths[:, None], float("-inf"))[:, None, None]


def attention_part(q: Any, keys: Any, values: Any, span: Span, scale: float,
                   prior: tuple[Any, Any] | None = None) -> tuple[Any, Any]:
    """Attention of ``q`` [B, kv_heads, M, head_dim] over the first ``span.lengths[b]`` columns
    of ``keys``/``values`` [B, kv_heads, span.width, head_dim]: (output, log-sum-exp of the
    scores). With ``prior`` (output, log-sum-exp) of the same queries over other keys, the
    attention over both. On CPU the ragged kernel for few queries per entry, which reads each
    entry only to its length (``ragged_attention``); ATen's fused kernel over masked columns for
    many queries or where the ragged one cannot be built; elsewhere ``plain_attention_part``.
    Every query must see at least one key (in ``attend`` each row sees its prompt and its own
    token)."""
    import torch

    if q.device.type == "cpu" and q.shape[2] <= RAGGED_MAX_QUERIES:
        ragged = kernel()
        if ragged is not None:
            if prior is None:
                return ragged.ragged_attention(q, keys, values, span.lengths, scale)
            return ragged.ragged_attention(q, keys, values, span.lengths, scale, *prior)
    if q.device.type != "cpu":
        out, lse = plain_attention_part(q, keys, values, span.mask, scale)
    else:
        out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
            q, keys, values, 0.0, False, attn_mask=span.mask, scale=scale)
    if prior is None:
        return out, lse
    # The softmax over both weighs each part's output by its share of the total mass,
    # exp(lse_part) / (exp(lse_prior) + exp(lse)): for the prior, a sigmoid.
    prior_out, prior_lse = prior
    share = torch.sigmoid(prior_lse - lse).unsqueeze(-1).to(out.dtype)
    return torch.lerp(out, prior_out, share), torch.logaddexp(prior_lse, lse)


def plain_attention_part(q: Any, keys: Any, values: Any, mask: Any, scale: float
                         ) -> tuple[Any, Any]:
    """``attention_part`` in plain tensor operations, for any device. The softmax runs in
    float32 whatever the cache's dtype, as the fused kernel and transformers' attention do."""
    import torch

    scores = torch.matmul(q, keys.transpose(-1, -2)).float().mul_(scale).add_(mask)
    lse = torch.logsumexp(scores, -1)
    weights = scores.sub_(lse.unsqueeze(-1)).exp_()
    return torch.matmul(weights.to(values.dtype), values), lse
