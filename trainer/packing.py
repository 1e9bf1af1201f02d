"""Packed micro-batches: the sequences of a micro-batch back to back in one row, no padding.

Right-padding a micro-batch to its longest sequence makes every layer compute on padding: 39% of
the positions of 4 MBPP-sized sequences (20% at 2). A packed micro-batch is one row of exactly
the real tokens, and three things keep it equal to the padded one:

* position ids restart at 0 for each sequence, so each gets the rotary positions it gets alone;
* attention stays inside each sequence: ``leti_packed_sdpa`` runs PyTorch's SDPA causally on
  each sequence's slice of the row (found from where the position ids restart). transformers'
  own packed-sequence support (no attention mask, restarting position ids: a block-diagonal
  mask) is just as correct, but SDPA then scores the whole row against itself, N x N instead of
  the sum of the n x n blocks, and measured slower than padding on this CPU;
* the loss is the mean cross-entropy over the micro-batch's target tokens (each sequence's own
  next tokens; never across a boundary; ``IGNORE_INDEX`` labels skipped), as the padded path's
  ``model(labels=...)`` computes it. The LM head (a 49,152-token vocabulary) runs only on the
  positions that have a target (``logits_to_keep``): not on each sequence's last token, nor on a
  masked prompt.

``micro_batch_loss`` is what the training loop calls for either path.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

from trainer.batches import IGNORE_INDEX, Encoded, collate

PACKED_ATTENTION = "leti_packed_sdpa"


@dataclass
class PackedBatch:
    """One row of concatenated sequences and the positions that carry a loss."""

    input_ids: Any  # (1, N) token ids
    position_ids: Any  # (1, N), restarting at 0 for each sequence
    keep: Any  # (K,) row positions whose next token is a target
    targets: Any  # (K,) those next tokens
    tokens: int  # N: real tokens, as the padded path counts them

    def to(self, device: Any) -> PackedBatch:
        return PackedBatch(self.input_ids.to(device), self.position_ids.to(device),
                           self.keep.to(device), self.targets.to(device), self.tokens)


def pack(batch: Sequence[Encoded]) -> PackedBatch:
    """Concatenate ``batch``; position ``j`` of a sequence predicts that sequence's label
    ``j + 1``, so its last token predicts nothing (the next sequence is not its continuation)."""
    import torch

    ids: list[int] = []
    positions: list[int] = []
    keep: list[int] = []
    targets: list[int] = []
    for e in batch:
        start = len(ids)
        ids.extend(e.input_ids)
        positions.extend(range(len(e.input_ids)))
        for j, label in enumerate(e.labels[1:]):
            if label != IGNORE_INDEX:
                keep.append(start + j)
                targets.append(label)
    return PackedBatch(torch.tensor([ids]), torch.tensor([positions]), torch.tensor(keep),
                       torch.tensor(targets), len(ids))


def packed_sdpa(module: Any, query: Any, key: Any, value: Any, attention_mask: Any,
                dropout: float = 0.0, scaling: float | None = None, **kwargs: Any) -> Any:
    """transformers attention function for one packed row: causal SDPA per sequence.

    Anything that is not a packed training row (a mask, a KV cache, several rows) goes to
    transformers' own SDPA function unchanged."""
    import torch
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    position_ids = kwargs.get("position_ids")
    if (attention_mask is not None or position_ids is None or query.shape[0] != 1
            or query.shape[2] != key.shape[2]):
        return sdpa_attention_forward(module, query, key, value, attention_mask,
                                      dropout=dropout, scaling=scaling, **kwargs)
    starts = (position_ids.reshape(-1) == 0).nonzero().flatten().tolist()
    if not starts or starts[0] != 0:
        raise ValueError("a packed row must start a sequence at position 0")
    bounds = [*starts, query.shape[2]]
    gqa = query.shape[1] != key.shape[1]  # grouped-query attention: fewer key/value heads
    out = [torch.nn.functional.scaled_dot_product_attention(
        query[:, :, a:b], key[:, :, a:b], value[:, :, a:b], dropout_p=dropout, is_causal=True,
        scale=scaling, enable_gqa=gqa) for a, b in pairwise(bounds)]
    # (1, heads, N, dim) -> (1, N, heads, dim), the layout transformers' attention returns
    return torch.cat(out, dim=2).transpose(1, 2).contiguous(), None


def _register() -> None:
    from transformers import AttentionInterface

    # Not registered as a mask function too: transformers then builds no mask for it
    # (masking_utils skips implementations it has no mask function for).
    AttentionInterface.register(PACKED_ATTENTION, packed_sdpa)


@contextmanager
def packed_attention(model: Any) -> Iterator[None]:
    """Route the model's attention through ``packed_sdpa`` for one forward pass."""
    _register()
    config = _base_config(model)
    previous = config._attn_implementation
    config._attn_implementation = PACKED_ATTENTION
    try:
        yield
    finally:
        config._attn_implementation = previous


def _base_config(model: Any) -> Any:
    """The transformers config under DDP, PEFT and accelerate wrappers."""
    while hasattr(model, "module"):  # DistributedDataParallel
        model = model.module
    return model.get_base_model().config if hasattr(model, "get_base_model") else model.config


def packed_loss(model: Any, packed: PackedBatch) -> Any:
    """Mean next-token cross-entropy of a packed row, the LM head only where there is a target."""
    import torch

    with packed_attention(model):
        out = model(input_ids=packed.input_ids, position_ids=packed.position_ids,
                    use_cache=False, logits_to_keep=packed.keep)
    logits = out.logits.reshape(-1, out.logits.shape[-1]).float()  # as transformers' loss does
    return torch.nn.functional.cross_entropy(logits, packed.targets)


def micro_batch_loss(model: Any, batch: Sequence[Encoded], *, packing: bool, pad_id: int,
                     device: Any) -> tuple[Any, int]:
    """(mean loss over the micro-batch's target tokens, real tokens in it), packed or padded."""
    if packing:
        packed = pack(batch).to(device)
        return packed_loss(model, packed), packed.tokens
    inputs = {k: v.to(device) for k, v in collate(batch, pad_id).items()}
    return model(**inputs).loss, int(inputs["attention_mask"].sum())
