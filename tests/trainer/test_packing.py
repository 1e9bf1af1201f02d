"""Packed micro-batches on a tiny random Llama: sequences never see each other, labels and
targets are the padded path's, and the loss (and its gradient) equals the padded path's."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from trainer.batches import IGNORE_INDEX, Encoded, encode_example
from trainer.packing import PACKED_ATTENTION, micro_batch_loss, pack, packed_attention

I = IGNORE_INDEX


def test_pack_restarts_positions_and_never_targets_across_a_boundary() -> None:
    batch = [Encoded((5, 6, 7), (5, 6, 7), "leti"),
             Encoded((8, 9, 10, 11), (I, I, 10, 11), "leti"),  # a masked prompt
             Encoded((12, 13), (12, 13), "code")]
    p = pack(batch)
    assert p.input_ids.tolist() == [[5, 6, 7, 8, 9, 10, 11, 12, 13]]
    assert p.position_ids.tolist() == [[0, 1, 2, 0, 1, 2, 3, 0, 1]]
    # position 2 (7, the end of the first sequence) must not predict 8: it predicts nothing
    assert p.keep.tolist() == [0, 1, 4, 5, 7]
    assert p.targets.tolist() == [6, 7, 10, 11, 13]
    assert p.tokens == 9


def load(tiny_model: Path) -> tuple:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32).eval()
    return model, AutoTokenizer.from_pretrained(tiny_model)


def sequences(tok, n: int = 3) -> list[list[int]]:
    texts = ["def add(a, b):\n    return a + b\n", "Reward: bad\nFeedback:\nTest 1 failed",
             "assert add(1, 2) == 3", "class Foo:\n    def __init__(self):\n        pass"]
    return [tok(t)["input_ids"] for t in texts[:n]]


def test_packed_logits_equal_each_sequence_alone(tiny_model: Path) -> None:
    model, tok = load(tiny_model)
    seqs = sequences(tok)
    assert len({len(s) for s in seqs}) == 3  # different lengths: boundaries are not aligned
    p = pack([Encoded(tuple(s), tuple(s), "leti") for s in seqs])
    with torch.no_grad(), packed_attention(model):
        packed = model(input_ids=p.input_ids, position_ids=p.position_ids,
                       use_cache=False).logits[0]
    with torch.no_grad():  # the same row without the packed attention: sequences mix
        mixed = model(input_ids=p.input_ids, use_cache=False).logits[0]
    start = 0
    for s in seqs:
        with torch.no_grad():
            alone = model(input_ids=torch.tensor([s]), use_cache=False).logits[0]
        torch.testing.assert_close(packed[start:start + len(s)], alone, atol=1e-5, rtol=1e-5)
        if start:  # the control: attending across the boundary does change the logits
            assert (mixed[start:start + len(s)] - alone).abs().max() > 1e-3
        start += len(s)


def test_packed_attention_is_only_active_inside_its_block(tiny_model: Path) -> None:
    model, _ = load(tiny_model)
    before = model.config._attn_implementation
    with pytest.raises(RuntimeError), packed_attention(model):
        assert model.config._attn_implementation == PACKED_ATTENTION
        raise RuntimeError("a failed forward")
    assert model.config._attn_implementation == before


def lora(model, seed: int = 0):
    """LoRA with random (non-zero) B and no dropout, so both paths see the same function."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    return get_peft_model(model, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0,
                                            init_lora_weights=False, task_type="CAUSAL_LM",
                                            target_modules=["q_proj", "v_proj", "down_proj"]))


def encoded_batch(tok, mask_prompt: bool) -> list[Encoded]:
    from trainer.data import Example

    examples = [Example("Reward: bad\nFeedback:\nTest 1 failed: Expected 3, got -1.\n",
                        "def add(a, b):\n    return a - b\n", "leti"),
                Example("Reward: good\n", "def add(a, b):\n    return a + b\n", "leti"),
                Example("Write a function to add two numbers. The function must be named",
                        " add", "leti")]
    out = [encode_example(x, tok, mask_prompt=mask_prompt, max_length=256) for x in examples]
    assert all(e is not None for e in out)
    return out  # type: ignore[return-value]


@pytest.mark.parametrize("mask_prompt", [False, True])
def test_packed_loss_and_gradients_equal_the_padded_ones(tiny_model: Path,
                                                          mask_prompt: bool) -> None:
    model, tok = load(tiny_model)
    model = lora(model).train()
    batch = encoded_batch(tok, mask_prompt)
    results = []
    for packing in (False, True):
        model.zero_grad(set_to_none=True)
        loss, tokens = micro_batch_loss(model, batch, packing=packing,
                                        pad_id=tok.pad_token_id, device="cpu")
        loss.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
        results.append((float(loss), tokens, grads))
    (padded, padded_tokens, padded_grads), (packed, packed_tokens, packed_grads) = results
    assert packed_tokens == padded_tokens == sum(len(e.input_ids) for e in batch)
    assert packed == pytest.approx(padded, abs=1e-5)
    for name, grad in padded_grads.items():
        torch.testing.assert_close(packed_grads[name], grad, atol=1e-5, rtol=1e-4)
    assert max(g.abs().max() for g in padded_grads.values()) > 1e-3  # non-trivial gradients


def test_masked_prompt_is_ignored_exactly(tiny_model: Path) -> None:
    model, tok = load(tiny_model)
    model = lora(model).train()
    batch = encoded_batch(tok, mask_prompt=True)
    p = pack(batch)
    completions = [sum(1 for x in e.labels if x != I) for e in batch]
    # every completion token is a target (the first is predicted by the prompt's last token),
    # no prompt token is
    assert len(p.targets) == sum(completions)
    loss, _ = micro_batch_loss(model, batch, packing=True, pad_id=tok.pad_token_id, device="cpu")
    manual = []
    with torch.no_grad():
        for e in batch:
            logits = model(input_ids=torch.tensor([e.input_ids]), use_cache=False).logits[0]
            for j in range(len(e.labels) - 1):
                if e.labels[j + 1] != I:
                    manual.append(-torch.log_softmax(logits[j], -1)[e.labels[j + 1]])
    assert float(loss) == pytest.approx(float(torch.stack(manual).mean()), abs=1e-5)


def test_a_training_curve_is_the_same_packed_or_padded(tiny_model: Path, triples_file: Path,
                                                       tmp_path: Path) -> None:
    """Same data, same seed, no dropout: the per-step losses of the two paths agree to float
    noise, before the first update and after twelve of them."""
    from trainer.config import LetiConfig
    from trainer.train import train

    curves = []
    for packing in (False, True):
        result = train(LetiConfig(
            data=triples_file, output_dir=tmp_path / str(packing), base_model=str(tiny_model),
            lora_rank=8, lora_dropout=0.0, batch_size=3, max_steps=12, epochs=100.0, save_every=0,
            code_ratio=0.0, learning_rate=1e-2, packing=packing, reuse_memory=packing,
            validate_load=False, precision="fp32"))  # float32 equality (bf16: test_precision)
        curves.append([h["loss"] for h in result.metrics["history"]])
    padded, packed = curves
    assert padded[0] != padded[-1]  # the model did learn: the curve is not flat
    assert packed == pytest.approx(padded, abs=1e-4)
