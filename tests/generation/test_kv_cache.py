"""The in-place KV cache holds exactly what transformers' concatenating cache holds, through
growth, row selection, cropping and replacement; and generation on it gives the same tokens."""

from __future__ import annotations

from typing import Any

import pytest

torch = pytest.importorskip("torch")

from transformers.cache_utils import DynamicLayer

from service.generation.kv_cache import MIN_ROOM, GrowingLayer, growing_cache


def _kv(rows: int, tokens: int) -> tuple[Any, Any]:
    return torch.randn(rows, 3, tokens, 8), torch.randn(rows, 3, tokens, 8)


def _same(a: Any, b: Any) -> None:
    assert a.get_seq_length() == b.get_seq_length()
    assert torch.equal(a.keys, b.keys) and torch.equal(a.values, b.values)


def test_growing_layer_matches_the_concatenating_layer() -> None:
    torch.manual_seed(0)
    mine, theirs = GrowingLayer(), DynamicLayer()
    for tokens in [40, *[1] * (2 * MIN_ROOM), 17]:  # a prefill, decode steps past two growths
        k, v = _kv(4, tokens)
        got, want = mine.update(k, v), theirs.update(k, v)
        assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
    _same(mine, theirs)
    assert mine._key_buffer.shape[-2] > mine.get_seq_length()  # room to spare, no copy per step

    rows = torch.tensor([3, 0])  # finished rows leave; the rest keep their history
    mine.batch_select_indices(rows)
    theirs.batch_select_indices(rows)
    _same(mine, theirs)
    k, v = _kv(2, 1)
    mine.update(k, v)
    theirs.update(k, v)
    _same(mine, theirs)

    mine.crop(-5)
    theirs.crop(-5)
    _same(mine, theirs)

    k, v = _kv(3, 9)
    mine.replace(k, v)
    assert mine.get_seq_length() == 9 and torch.equal(mine.keys, k)
    k2, v2 = _kv(3, 1)
    keys, values = mine.update(k2, v2)
    assert torch.equal(keys, torch.cat([k, k2], dim=-2))
    assert torch.equal(values, torch.cat([v, v2], dim=-2))


def test_growing_cache_replaces_every_full_attention_layer(tiny_model: Any) -> None:
    cache = growing_cache(tiny_model.config)
    assert len(cache.layers) == tiny_model.config.num_hidden_layers
    assert all(isinstance(layer, GrowingLayer) for layer in cache.layers)


def test_long_greedy_generation_matches_transformers(tiny_model: Any, smol_tokenizer: Any) -> None:
    """Past several growths of the buffers, the tokens are transformers' own."""
    from service.generation.sampling import sample_batch
    from service.generation.types import SamplingParams

    prompts = ["def add(a, b):", "Write a python function to reverse a string and return it."]
    specials = {"add_special_tokens": False}
    new = 3 * MIN_ROOM
    out = sample_batch(tiny_model, smol_tokenizer, prompts,
                       SamplingParams(temperature=0, max_new_tokens=new), [[0], [0]], specials)
    enc = smol_tokenizer(prompts, padding=True, return_tensors="pt", **specials)
    ref = tiny_model.generate(**enc, do_sample=False, max_new_tokens=new,
                              pad_token_id=smol_tokenizer.pad_token_id)
    for i, rows in enumerate(out):
        assert rows[0].text == smol_tokenizer.decode(ref[i, enc["input_ids"].shape[1]:].tolist(),
                                                     skip_special_tokens=True)
    assert max(rows[0].completion_tokens for rows in out) > 2 * MIN_ROOM  # the buffers grew
