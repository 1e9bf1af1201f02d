"""The fast path (FastLlama + SlotCache + sample_fast) against the reference decode loop."""

from __future__ import annotations

from typing import Any

import pytest

torch = pytest.importorskip("torch")

PROMPTS = ["def add(a, b):", "Write a function to reverse a string.", "print(", "x = [1, 2"]
ENCODE = {"add_special_tokens": False}


def _seeds(params: Any) -> list[list[int]]:
    from service.generation.sampling import row_seed

    return [[row_seed(3, i, j) for j in range(params.n)] for i in range(len(PROMPTS))]


def _fast(model: Any, tokenizer: Any, params: Any, max_rows: int, **kwargs: Any) -> Any:
    from service.generation.fast_llama import FastLlama
    from service.generation.fast_sampling import sample_fast

    engine = FastLlama(model, pack_rows=None)
    return sample_fast(engine, engine.weights(None), tokenizer, PROMPTS, params, _seeds(params),
                       ENCODE, max_rows=max_rows, **kwargs)


def _both(model: Any, tokenizer: Any, params: Any, max_rows: int, **kwargs: Any
          ) -> tuple[Any, Any]:
    from service.generation.sampling import sample_batch

    ref = sample_batch(model, tokenizer, PROMPTS, params, _seeds(params), ENCODE, max_rows=8)
    return ref, _fast(model, tokenizer, params, max_rows, **kwargs)


# The tiny model has 2 queries per kv head: with n = 2, 2 queries per row and 4 per group.
KERNELS = {"ragged": 6, "mixed": 2, "masked": None}  # RAGGED_MAX_QUERIES, or no kernel at all


@pytest.mark.parametrize(("max_rows", "prefill_tokens"), [(1, 256), (3, 256), (16, 256), (3, 2)])
@pytest.mark.parametrize("kernels", list(KERNELS))
def test_greedy_tokens_equal_the_reference_path(tiny_model: Any, smol_tokenizer: Any,
                                                max_rows: int, prefill_tokens: int, kernels: str,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Two-token prefill slices: every prompt prefilled in several passes. Attention by the
    ragged kernel for both parts, for rows' own tokens only (prompts by ATen's fused kernel),
    or with no ragged kernel at all (where it cannot be built)."""
    from service.generation import attention_parts
    from service.generation.types import SamplingParams

    limit = KERNELS[kernels]
    if limit is None:
        monkeypatch.setattr(attention_parts, "kernel", lambda: None)
    else:
        monkeypatch.setattr(attention_parts, "RAGGED_MAX_QUERIES", limit)
    params = SamplingParams(n=2, temperature=0, max_new_tokens=40)
    ref, fast = _both(tiny_model, smol_tokenizer, params, max_rows,
                      prefill_tokens=prefill_tokens)
    assert [[(s.text, s.completion_tokens, s.finish_reason) for s in r] for r in fast] == [
        [(s.text, s.completion_tokens, s.finish_reason) for s in r] for r in ref]


def test_seeded_sampling_repeats(tiny_model: Any, smol_tokenizer: Any) -> None:
    from service.generation.types import SamplingParams

    params = SamplingParams(n=3, temperature=0.8, top_p=0.95, max_new_tokens=24, seed=3)
    fast = _fast(tiny_model, smol_tokenizer, params, 5)
    again = _fast(tiny_model, smol_tokenizer, params, 5)
    assert [[s.text for s in r] for r in fast] == [[s.text for s in r] for r in again]
    assert len({s.text for r in fast for s in r}) > 1  # really sampled, not greedy


def test_greedy_equals_the_reference_past_kv_cache_growth(tiny_model: Any,
                                                           smol_tokenizer: Any) -> None:
    """160 new tokens: the reference cache grows past its first room (kv_cache.MIN_ROOM)."""
    from service.generation.kv_cache import MIN_ROOM
    from service.generation.types import SamplingParams

    params = SamplingParams(n=1, temperature=0, max_new_tokens=MIN_ROOM + 32)
    ref, fast = _both(tiny_model, smol_tokenizer, params, 3)
    assert max(s.completion_tokens for r in ref for s in r) > MIN_ROOM
    assert [[s.text for s in r] for r in fast] == [[s.text for s in r] for r in ref]


async def test_generator_takes_the_fast_path_with_adapters_as_the_reference_does(
        tiny_model: Any, smol_tokenizer: Any, adapters: dict[str, Any]) -> None:
    """The embedded generator's default path, base and a merged adapter, against the reference
    path of the same model (greedy), and an adapter it cannot merge stays on the reference."""
    import copy

    from service.generation.embedded import EmbeddedGenerator
    from service.generation.types import SamplingParams

    fast = EmbeddedGenerator(tiny_model, smol_tokenizer, max_batch_size=4)
    ref = EmbeddedGenerator(copy.deepcopy(tiny_model), smol_tokenizer, decode_path="reference")
    assert (fast.decode_path, ref.decode_path) == ("fast", "reference")
    params = SamplingParams(n=2, temperature=0, max_new_tokens=24)
    for gen in (fast, ref):
        await gen.load_adapter("apple", str(adapters["apple"]))
    for adapter in ("base", "apple"):
        got = await fast.generate(PROMPTS, params, adapter=adapter)
        want = await ref.generate(PROMPTS, params, adapter=adapter)
        assert [[c.text for c in r] for r in got] == [[c.text for c in r] for r in want]
    assert fast.last_stats is not None and fast.last_stats.steps > 0
    apple = await fast.generate(PROMPTS[:1], params, adapter="apple")
    assert "apple" in apple[0][0].text  # the merged set is the adapter's, not the base's


def test_fast_path_refuses_what_it_cannot_run(tiny_model: Any, smol_tokenizer: Any) -> None:
    from service.generation.embedded import EmbeddedGenerator

    tiny_model.config.hidden_act = "gelu"
    auto = EmbeddedGenerator(tiny_model, smol_tokenizer)
    assert auto.decode_path == "reference" and "activation" in (auto.fast_unavailable or "")
    with pytest.raises(ValueError, match="fast path cannot run"):
        EmbeddedGenerator(tiny_model, smol_tokenizer, decode_path="fast")
