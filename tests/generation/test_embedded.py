"""The embedded backend on a tiny random model: batching, adapters added and removed on the
loaded base model, and the errors the API turns into 4xx."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from service.generation import (
    BASE,
    AdapterError,
    AdapterNotFound,
    SamplingParams,
)
from tests.generation.conftest import train_lora

PROMPTS = ["Write a function to add two numbers.", "hello", "def reverse(s):"]


async def test_n_samples_per_prompt_with_token_counts(tiny_generator: Any) -> None:
    out = await tiny_generator.generate(PROMPTS, SamplingParams(n=3, max_new_tokens=5, seed=1))
    assert [len(row) for row in out] == [3, 3, 3]
    for prompt, row in zip(PROMPTS, out, strict=True):
        expected = len(tiny_generator.tokenizer(prompt, add_special_tokens=False)["input_ids"])
        assert {c.prompt_tokens for c in row} == {expected}
        assert all(c.completion_tokens == 5 and c.finish_reason == "length" for c in row)
        assert all(c.adapter is None for c in row)


async def test_small_batches_give_the_same_answers_in_the_same_order(
        tiny_generator: Any) -> None:
    params = SamplingParams(n=2, temperature=0, max_new_tokens=6)
    whole = await tiny_generator.generate(PROMPTS, params)
    tiny_generator.max_batch_size = 1  # one row per forward pass: the plain loop
    assert await tiny_generator.generate(PROMPTS, params) == whole


async def test_seeded_requests_repeat(tiny_generator: Any) -> None:
    params = SamplingParams(n=2, temperature=0.9, max_new_tokens=6, seed=42)
    assert await tiny_generator.generate(PROMPTS, params) == \
        await tiny_generator.generate(PROMPTS, params)


async def test_adapters_are_added_switched_and_removed_on_the_loaded_base(
        tiny_generator: Any, adapters: dict[str, Path]) -> None:
    model = tiny_generator.model
    params = SamplingParams(temperature=0, max_new_tokens=6)
    before = await tiny_generator.generate(["hello"], params)
    await tiny_generator.load_adapter("apple", adapters["apple"])
    await tiny_generator.load_adapter("zebra", adapters["zebra"])
    assert tiny_generator.model is model  # the base was never reloaded
    assert [a.name for a in tiny_generator.list_adapters()] == ["apple", "zebra"]
    apple = (await tiny_generator.generate(["hello"], params, adapter="apple"))[0][0]
    zebra = (await tiny_generator.generate(["hello"], params, adapter="zebra"))[0][0]
    assert "apple" in apple.text and "zebra" in zebra.text and apple.adapter == "apple"
    assert await tiny_generator.generate(["hello"], params, adapter=BASE) == before
    assert await tiny_generator.generate(["hello"], params) == before  # alias: base for now
    await tiny_generator.activate("zebra")
    assert tiny_generator.serving == "zebra"
    assert (await tiny_generator.generate(["hello"], params))[0][0] == zebra
    with pytest.raises(AdapterError, match="serving the alias"):
        await tiny_generator.unload_adapter("zebra")
    await tiny_generator.unload_adapter("apple")
    assert [a.name for a in tiny_generator.list_adapters()] == ["zebra"]
    with pytest.raises(AdapterNotFound):
        await tiny_generator.generate(["hello"], params, adapter="apple")
    await tiny_generator.activate(BASE)
    await tiny_generator.unload_adapter("zebra")  # the last one: back to the bare base
    assert await tiny_generator.generate(["hello"], params) == before


async def test_hot_swap_versions_the_name_and_retires_the_previous(
        tiny_generator: Any, adapters: dict[str, Path]) -> None:
    assert await tiny_generator.hot_swap(adapters["apple"]) == "policy-v1"
    assert await tiny_generator.hot_swap(adapters["zebra"], wait=True) == "policy-v2"
    assert tiny_generator.serving == "policy-v2"
    assert [a.name for a in tiny_generator.list_adapters()] == ["policy-v2"]
    out = await tiny_generator.generate(["hello"], SamplingParams(temperature=0, max_new_tokens=4))
    assert out[0][0].adapter == "policy-v2" and "zebra" in out[0][0].text


async def test_bad_adapter_requests_are_clear_errors(
        tiny_generator: Any, adapters: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(AdapterNotFound, match="not served"):
        await tiny_generator.generate(["hi"], adapter="nope")
    with pytest.raises(AdapterError, match="does not exist"):
        await tiny_generator.load_adapter("x", tmp_path / "missing")
    with pytest.raises(AdapterError, match="invalid adapter name"):
        await tiny_generator.load_adapter("base", adapters["apple"])
    await tiny_generator.load_adapter("x", adapters["apple"])
    with pytest.raises(AdapterError, match="already loaded"):
        await tiny_generator.load_adapter("x", adapters["zebra"])
    with pytest.raises(AdapterNotFound):
        await tiny_generator.unload_adapter("never-loaded")
    with pytest.raises(TypeError):
        await tiny_generator.generate("one string")
    with pytest.raises(ValueError):
        await tiny_generator.generate([""])


async def test_adapters_vllm_could_not_serve_are_refused(
        tiny_generator: Any, tiny_base: Any, smol_tokenizer: Any, tmp_path: Path) -> None:
    big = train_lora(tiny_base, smol_tokenizer, "x", tmp_path / "big", rank=32, steps=1)
    with pytest.raises(AdapterError, match="rank 32 exceeds max_lora_rank 16"):
        await tiny_generator.load_adapter("big", big)
    saved = train_lora(tiny_base, smol_tokenizer, "x", tmp_path / "save", steps=1,
                       modules_to_save=["lm_head"])
    with pytest.raises(AdapterError, match="modules_to_save"):
        await tiny_generator.load_adapter("save", saved)
    config = json.loads((big / "adapter_config.json").read_text())
    (big / "adapter_config.json").write_text(json.dumps({**config, "peft_type": "IA3"}))
    with pytest.raises(AdapterError, match="only plain LORA"):
        await tiny_generator.load_adapter("ia3", big)
    # the trainer's rule (trainer.adapters.servable_problems), not a second copy of it
    for extra, reason in (({"rank_pattern": {"q_proj": 8}}, "rank_pattern"),
                          ({"lora_bias": True}, "lora_bias"), ({"r": 0}, "not a positive")):
        (big / "adapter_config.json").write_text(json.dumps({**config, "r": 16, **extra}))
        with pytest.raises(AdapterError, match=reason):
            await tiny_generator.load_adapter("odd", big)
    assert tiny_generator.list_adapters() == []


def test_model_lock_serves_waiters_in_arrival_order() -> None:
    """A generation re-taking the lock between passes must not starve an adapter load."""
    import threading
    import time

    from service.generation.embedded import FairLock

    lock, order = FairLock(), []
    lock.__enter__()  # a forward pass in progress
    waiters = []
    for name in ("load", "next-pass-1", "next-pass-2"):
        def take(name: str = name) -> None:
            with lock:
                order.append(name)
        waiters.append(threading.Thread(target=take))
        waiters[-1].start()
        time.sleep(0.05)  # arrive in this order
    lock.__exit__()
    for thread in waiters:
        thread.join(timeout=5)
    assert order == ["load", "next-pass-1", "next-pass-2"]


def test_grouped_kv_attention_on_cpu_gives_the_same_tokens(
        tiny_model: Any, smol_tokenizer: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The CPU generator lets SDPA read grouped K/V heads in place instead of copying them per
    query group (``repeat_kv``); that must not change a single token, greedy or sampled, with
    left padding and prefill slices (the tiny model has 4 query heads over 2 K/V heads)."""
    from service.generation.embedded import SDPA_GQA, EmbeddedGenerator
    from service.generation.types import SamplingParams

    assert tiny_model.config.num_key_value_heads < tiny_model.config.num_attention_heads
    prompts = ["def add(a, b):", "Write a function to reverse a string. The function must be",
               "x = 1"]

    def texts(flag: str) -> list[list[str]]:
        monkeypatch.setenv(SDPA_GQA, flag)  # kept: the generator only sets a default
        generator = EmbeddedGenerator(tiny_model, smol_tokenizer, max_batch_size=2,
                                      prefill_tokens=4)
        out = []
        for params in (SamplingParams(temperature=0.0, max_new_tokens=12),
                       SamplingParams(n=2, temperature=1.0, max_new_tokens=12, seed=5)):
            out += [[c.text for c in row] for row in generator.generate_sync(prompts, params, None)]
        return out

    assert texts("1") == texts("0")
    monkeypatch.delenv(SDPA_GQA)
    EmbeddedGenerator(tiny_model, smol_tokenizer)
    assert os.environ[SDPA_GQA] == "1"  # the CPU default


def test_a_generate_call_carries_four_widths_of_samples(tiny_generator: Any) -> None:
    # the one rule the loop, the study and benchmark jobs split their problems by
    tiny_generator.max_batch_size = 64
    assert tiny_generator.rows == 64
    assert tiny_generator.prompts_per_call(1) == 256  # greedy evaluation: 200 problems, one call
    assert tiny_generator.prompts_per_call(8) == 32
    assert tiny_generator.prompts_per_call(1000) == 1  # never zero prompts
    tiny_generator.max_batch_size = 4
    assert tiny_generator.prompts_per_call(1) == 16
