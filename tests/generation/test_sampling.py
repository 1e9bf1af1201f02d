"""The embedded decode loop on a tiny random Llama: greedy agrees with transformers' generate,
left padding is harmless, seeds repeat whatever the batch, stop sequences and counts are exact."""

from __future__ import annotations

from typing import Any

import pytest

from service.generation.sampling import sample_batch
from service.generation.types import SamplingParams

PROMPTS = ["def add(a, b):", "Write a python function to reverse a string and return it."]
NO_SPECIALS = {"add_special_tokens": False}


def _sample(model: Any, tok: Any, prompts: list[str], params: SamplingParams,
            seeds: list[list[int]] | None = None) -> Any:
    seeds = seeds or [[j for j in range(params.n)] for _ in prompts]
    return sample_batch(model, tok, prompts, params, seeds, NO_SPECIALS)


def test_greedy_matches_transformers_generate(tiny_model: Any, smol_tokenizer: Any) -> None:
    params = SamplingParams(temperature=0, max_new_tokens=12)
    ours = _sample(tiny_model, smol_tokenizer, PROMPTS, params)
    enc = smol_tokenizer(PROMPTS, padding=True, return_tensors="pt", **NO_SPECIALS)
    ref = tiny_model.generate(**enc, do_sample=False, max_new_tokens=12,
                              pad_token_id=smol_tokenizer.pad_token_id)
    for i, rows in enumerate(ours):
        new = ref[i, enc["input_ids"].shape[1]:].tolist()
        assert rows[0].text == smol_tokenizer.decode(new, skip_special_tokens=True)
        assert rows[0].prompt_tokens == int(enc["attention_mask"][i].sum())


def test_a_vanishing_temperature_is_greedy_not_an_overflow(tiny_model: Any, smol_tokenizer: Any
                                                          ) -> None:
    # Found by the API fuzzer: temperature 5e-324 made every logit inf and the softmax NaN.
    greedy = _sample(tiny_model, smol_tokenizer, PROMPTS, SamplingParams(temperature=0, max_new_tokens=8))
    for tiny in (5e-324, 1e-9):
        ours = _sample(tiny_model, smol_tokenizer, PROMPTS,
                       SamplingParams(temperature=tiny, max_new_tokens=8))
        assert [r[0].text for r in ours] == [r[0].text for r in greedy]


def test_prefill_in_slices_gives_the_same_answers(tiny_model: Any, smol_tokenizer: Any) -> None:
    params = SamplingParams(n=2, temperature=0, max_new_tokens=8)
    seeds = [[0, 1], [0, 1]]
    whole = sample_batch(tiny_model, smol_tokenizer, PROMPTS, params, seeds, NO_SPECIALS,
                         prefill_tokens=10_000)
    sliced = sample_batch(tiny_model, smol_tokenizer, PROMPTS, params, seeds, NO_SPECIALS,
                          prefill_tokens=6)  # 3 tokens per pass for each of the 2 prompts
    assert sliced == whole


def test_shared_prefix_is_prefilled_once_with_the_same_answers(
        tiny_model: Any, smol_tokenizer: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from service.generation import decode_batch
    from trainer.prompts import TaskPrompt, build_prompt

    prompts = [build_prompt(TaskPrompt("user", text), tokenizer=smol_tokenizer)
               for text in ("Reverse a string.", "Write a function that adds two numbers.")]
    ids = [smol_tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    assert decode_batch.shared_prefix(ids) > 20  # the chat template's system turn and more
    seen: list[int] = []
    tiny_model.register_forward_pre_hook(
        lambda _m, _a, kw: seen.append(kw["input_ids"].numel()), with_kwargs=True)
    params = SamplingParams(n=2, temperature=0, max_new_tokens=6)
    shared = _sample(tiny_model, smol_tokenizer, prompts, params)
    prefill_shared = sum(seen[:-5])  # all but the 5 decode steps after the first token
    seen.clear()
    monkeypatch.setattr(decode_batch, "shared_prefix", lambda _lists: 0)
    assert _sample(tiny_model, smol_tokenizer, prompts, params) == shared
    assert prefill_shared < sum(seen[:-5])
    alone = [_sample(tiny_model, smol_tokenizer, [p], params)[0] for p in prompts]
    assert alone == shared


def test_rows_joining_a_running_batch_get_the_same_answers(
        tiny_model: Any, smol_tokenizer: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from service.generation.decode_batch import DecodeBatch

    prompts = [*PROMPTS, "import os", "class Stack:", "Return the sum of a list of numbers."]
    free = _sample(tiny_model, smol_tokenizer, prompts[:1],
                   SamplingParams(temperature=0, max_new_tokens=12))[0][0].text
    params = SamplingParams(n=2, temperature=0, max_new_tokens=12, stop=(free[2:5],))
    seeds = [[0, 1] for _ in prompts]
    joined: list[int] = []
    absorb = DecodeBatch.absorb
    monkeypatch.setattr(DecodeBatch, "absorb",
                        lambda self, other: (joined.append(len(other.rows)), absorb(self, other)))
    rolling = sample_batch(tiny_model, smol_tokenizer, prompts, params, seeds, NO_SPECIALS,
                           max_rows=3)
    assert joined  # rows finishing early (the stop sequence) made room for waiting rows
    assert rolling[0][0].finish_reason == "stop" and rolling[0][0].completion_tokens < 12
    all_at_once = sample_batch(tiny_model, smol_tokenizer, prompts, params, seeds, NO_SPECIALS)
    one_by_one = sample_batch(tiny_model, smol_tokenizer, prompts, params, seeds, NO_SPECIALS,
                              max_rows=1)
    assert rolling == all_at_once == one_by_one


def test_left_padding_does_not_change_a_prompt_answer(tiny_model: Any, smol_tokenizer: Any
                                                      ) -> None:
    params = SamplingParams(temperature=0, max_new_tokens=10)
    alone = _sample(tiny_model, smol_tokenizer, PROMPTS[:1], params)[0][0]
    batched = _sample(tiny_model, smol_tokenizer, PROMPTS, params)[0][0]
    assert alone == batched


def test_seeds_repeat_and_each_sample_has_its_own_stream(tiny_model: Any, smol_tokenizer: Any
                                                         ) -> None:
    params = SamplingParams(n=3, temperature=1.0, top_p=0.9, max_new_tokens=8)
    seeds = [[11, 12, 13], [21, 22, 23]]
    first = _sample(tiny_model, smol_tokenizer, PROMPTS, params, seeds)
    again = _sample(tiny_model, smol_tokenizer, PROMPTS, params, seeds)
    assert first == again
    assert len({s.text for s in first[0]}) == 3  # different seeds, different samples
    reseeded = _sample(tiny_model, smol_tokenizer, PROMPTS, params, [[11, 12, 99], [21, 22, 23]])
    assert reseeded[0][:2] == first[0][:2] and reseeded[0][2] != first[0][2]


def test_stop_sequence_cuts_the_text_and_counts_every_generated_token(
        tiny_model: Any, smol_tokenizer: Any) -> None:
    free = _sample(tiny_model, smol_tokenizer, PROMPTS[:1],
                   SamplingParams(temperature=0, max_new_tokens=16))[0][0]
    assert free.finish_reason == "length" and free.completion_tokens == 16
    stop = free.text[len(free.text) // 2: len(free.text) // 2 + 3]
    cut = _sample(tiny_model, smol_tokenizer, PROMPTS[:1],
                  SamplingParams(temperature=0, max_new_tokens=16, stop=(stop,)))[0][0]
    assert cut.finish_reason == "stop"
    assert cut.text == free.text[:free.text.index(stop)]
    assert stop not in cut.text and cut.completion_tokens < 16
    tokens_for_stop = smol_tokenizer(free.text, add_special_tokens=False)["input_ids"]
    assert cut.completion_tokens <= len(tokens_for_stop)


def test_eos_ends_a_sample_with_finish_reason_stop(tiny_model: Any, smol_tokenizer: Any) -> None:
    eos = smol_tokenizer.eos_token_id

    def favour_eos(_module: Any, _inputs: Any, logits: Any) -> Any:
        logits[..., eos] += 1000.0  # the model now always wants to stop
        return logits

    tiny_model.lm_head.register_forward_hook(favour_eos)
    out = _sample(tiny_model, smol_tokenizer, PROMPTS,
                  SamplingParams(temperature=0, max_new_tokens=8))
    for rows in out:
        assert rows[0].text == "" and rows[0].finish_reason == "stop"
        assert rows[0].completion_tokens == 1  # the EOS token itself, as vLLM counts it


def test_too_long_a_request_is_a_clear_error(tiny_model: Any, smol_tokenizer: Any) -> None:
    with pytest.raises(ValueError, match="exceeds the model's context"):
        _sample(tiny_model, smol_tokenizer, PROMPTS, SamplingParams(max_new_tokens=5000))


@pytest.mark.parametrize("bad", [{"n": 0}, {"temperature": -1}, {"top_p": 0},
                                 {"max_new_tokens": 0}, {"stop": ("",)}, {"seed": -2}])
def test_bad_sampling_parameters_are_refused(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        SamplingParams(**bad)


def test_repetition_penalty_pushes_a_sample_out_of_its_loop(tiny_model: Any,
                                                           smol_tokenizer: Any) -> None:
    """Greedy on a random model repeats itself; the penalty (on generated tokens only) makes
    the same rows repeat less, both decode paths agree, and 1.0 changes nothing."""
    import torch

    from service.generation.fast_llama import FastLlama
    from service.generation.fast_sampling import sample_fast
    from service.generation.token_choice import penalise_repeats

    logits = torch.tensor([[2.0, -1.0, 0.5], [1.0, 1.0, 1.0]])
    out = penalise_repeats(logits, [[0, 1, 0], []], 2.0)
    assert out.tolist() == [[1.0, -2.0, 0.5], [1.0, 1.0, 1.0]]
    assert penalise_repeats(logits, [[0]], 1.0) is logits

    prompts = ["def add(a, b):", "x = [1, 2"]
    seeds = [[1], [2]]
    plain = SamplingParams(temperature=0, max_new_tokens=48)
    penalised = SamplingParams(temperature=0, max_new_tokens=48, repetition_penalty=1.5)

    def distinct_share(samples: Any) -> float:
        ids = [smol_tokenizer(s.text, add_special_tokens=False).input_ids for r in samples for s in r]
        return sum(len(set(t)) for t in ids) / sum(len(t) for t in ids)

    ref_plain = sample_batch(tiny_model, smol_tokenizer, prompts, plain, seeds, NO_SPECIALS)
    ref = sample_batch(tiny_model, smol_tokenizer, prompts, penalised, seeds, NO_SPECIALS)
    engine = FastLlama(tiny_model, pack_rows=None)
    fast = sample_fast(engine, engine.weights(None), smol_tokenizer, prompts, penalised, seeds,
                       NO_SPECIALS)
    assert [[s.text for s in r] for r in fast] == [[s.text for s in r] for r in ref]
    assert distinct_share(ref) > distinct_share(ref_plain)
    with pytest.raises(ValueError, match="repetition_penalty"):
        SamplingParams(repetition_penalty=0)


def _frequencies(logits: list[list[float]], params: SamplingParams, draws: int) -> Any:
    import torch

    from service.generation.token_choice import choose_tokens

    rows = torch.tensor(logits)
    counts = torch.zeros_like(rows)
    generators = [torch.Generator().manual_seed(i) for i in range(len(logits))]
    for _ in range(draws):
        chosen = choose_tokens(rows, params, generators, [[] for _ in logits])
        counts[torch.arange(len(logits)), chosen] += 1
    return counts / draws


def test_nucleus_sampling_draws_each_token_at_its_renormalised_probability() -> None:
    """Temperature 1, top-p 0.8 over [0.5, 0.3, 0.15, 0.05]: the nucleus is the first two
    tokens (0.5 + 0.3 reaches 0.8), drawn at 0.625 / 0.375; the others never. The second row
    is flat over 4,000 tokens, so the ranked candidates near its best token hold less than
    top-p and the whole row is ranked: 80% of its tokens can be drawn, none of the rest."""
    import math

    import torch

    peaked = [math.log(p) for p in (0.5, 0.3, 0.15, 0.05)] + [-1e4] * 3996
    flat = [0.0] * 4000
    freq = _frequencies([peaked, flat], SamplingParams(temperature=1.0, top_p=0.8), 4000)
    assert abs(float(freq[0, 0]) - 0.625) < 0.03 and abs(float(freq[0, 1]) - 0.375) < 0.03
    assert float(freq[0, 2:].sum()) == 0
    drawn = (freq[1] > 0).nonzero().flatten()
    assert 3190 < int(drawn.max()) < 3202 and len(drawn) > 2000  # of ~3,200 (rounding)
    # Without a nucleus (top-p 1) every token keeps its probability.
    whole = _frequencies([peaked[:4]], SamplingParams(temperature=1.0, top_p=1.0), 4000)
    assert torch.allclose(whole[0], torch.tensor([0.5, 0.3, 0.15, 0.05]), atol=0.03)
