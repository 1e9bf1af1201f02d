"""The precision rule (``auto`` per device) and a bf16 training step that stays close to float32,
on a tiny random Llama: the frozen base multiplies in bf16, the LoRA branch's contribution is
added in float32 and so survives where autocast rounds it away."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from trainer import base_model
from trainer import precision as precision_module
from trainer.precision import frozen_linears_in_bf16, training_precision


@pytest.mark.parametrize(("native", "cpu_ok", "name", "frozen_bf16"), [
    (True, True, "bf16-frozen", True),  # AMX / AVX512-BF16: fp32 weights, bf16 frozen matmuls
    (True, False, "fp32", False),  # the switch off: float32 everywhere
    (False, True, "fp32", False),  # emulated bf16 is slower than fp32: never
])
def test_auto_on_cpu_is_bf16_only_where_native_and_checked(
        monkeypatch: pytest.MonkeyPatch, native: bool, cpu_ok: bool, name: str,
        frozen_bf16: bool) -> None:
    monkeypatch.setattr(base_model, "native_bf16", lambda device: native)
    monkeypatch.setattr(precision_module, "AUTO_BF16_ON_CPU", cpu_ok)
    p = training_precision("auto", "cpu")
    assert (p.name, p.weights, p.frozen_bf16) == (name, torch.float32, frozen_bf16)


def test_explicit_precisions_ignore_the_capability(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(base_model, "native_bf16", lambda device: True)
    assert training_precision("fp32", "cpu").name == "fp32"
    assert training_precision("fp32", "cuda").name == "fp32"
    monkeypatch.setattr(base_model, "native_bf16", lambda device: False)
    assert training_precision("bf16", "cpu").name == "bf16-frozen"
    cuda = training_precision("bf16", "cuda")  # on a GPU, bf16 weights as before
    assert (cuda.weights, cuda.frozen_bf16) == (torch.bfloat16, False)


def test_auto_on_cuda_follows_the_capability(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(base_model, "native_bf16", lambda device: device.startswith("cuda"))
    assert training_precision("auto", "cuda").weights == torch.bfloat16
    monkeypatch.setattr(base_model, "native_bf16", lambda device: False)
    assert training_precision("auto", "cuda").name == "fp32"


def test_native_bf16_is_a_plain_answer_on_any_machine() -> None:
    assert isinstance(base_model.native_bf16("cpu"), bool)


def _lora_model(tiny_model: Path, init_b: bool) -> torch.nn.Module:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    return get_peft_model(model, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0,
                                            target_modules=["q_proj", "v_proj", "down_proj"],
                                            init_lora_weights=not init_b))


def _batch(tiny_model: Path) -> tuple[list, int]:
    from transformers import AutoTokenizer

    from trainer.batches import Encoded

    tok = AutoTokenizer.from_pretrained(tiny_model)
    texts = ["def add(a, b):\n    return a + b\n", "Reward: bad\nFeedback:\nTest 1 failed",
             "class Foo:\n    def __init__(self):\n        self.x = [1, 2, 3]\n"]
    return [Encoded(tuple(ids), tuple(ids), "leti") for ids in
            (tok(t)["input_ids"] for t in texts)], tok.pad_token_id


def _step(model: torch.nn.Module, batch: list, pad_id: int, precision: str) -> tuple[float, dict]:
    from trainer.packing import micro_batch_loss

    model.zero_grad(set_to_none=True)
    with training_precision(precision, "cpu").applied(model):
        loss, _ = micro_batch_loss(model, batch, packing=True, pad_id=pad_id, device="cpu")
        loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return float(loss), grads


def test_a_bf16_step_gives_the_float32_loss_and_gradients(tiny_model: Path) -> None:
    """The same LoRA model and packed micro-batch: bf16 matmuls move the loss by bf16 rounding
    (~1e-3 relative), the LoRA weights stay float32 masters and their gradients point the same
    way; afterwards the model computes in float32 again."""
    model = _lora_model(tiny_model, init_b=True)  # B != 0: real gradients
    batch, pad_id = _batch(tiny_model)
    fp32_loss, fp32_grads = _step(model, batch, pad_id, "fp32")
    bf16_loss, bf16_grads = _step(model, batch, pad_id, "bf16")
    assert bf16_loss == pytest.approx(fp32_loss, rel=1e-2)
    assert bf16_loss != fp32_loss  # the control: the frozen layers did multiply in bf16
    assert fp32_grads.keys() == bf16_grads.keys() and fp32_grads
    for name, g in fp32_grads.items():
        assert bf16_grads[name].dtype == torch.float32  # float32 master weights
        cos = torch.nn.functional.cosine_similarity(g.double().flatten(),
                                                    bf16_grads[name].double().flatten(), 0)
        assert float(cos) > 0.99, name
    assert _step(model, batch, pad_id, "fp32")[0] == fp32_loss  # the patch is gone


def test_frozen_layers_only_and_a_tied_head_shares_one_copy(tiny_model: Path) -> None:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    model.lm_head.weight = model.model.embed_tokens.weight  # tied, as SmolLM2's
    linears = [m for m in model.modules() if type(m) is torch.nn.Linear]
    for p in model.parameters():
        p.requires_grad_(False)
    linears[0].weight.requires_grad_(True)  # a trainable layer stays as it is
    with frozen_linears_in_bf16(model) as covered:
        assert covered == len(linears) - 1
        assert "forward" not in vars(linears[0]) and "forward" in vars(model.lm_head)
    assert not any("forward" in vars(m) for m in linears)


def test_a_small_lora_update_survives_where_autocast_rounds_it_away(tiny_model: Path) -> None:
    """Why the frozen route and not autocast: a fresh adapter's contribution is far below the
    bf16 spacing of a layer's output. The frozen route adds it to the float32 output, so the
    layer's output moves by exactly the LoRA branch; autocast adds it in bf16 and rounds it."""
    model = _lora_model(tiny_model, init_b=False)
    layer = model.base_model.model.model.layers[0].self_attn.q_proj  # a peft LoRA Linear
    with torch.no_grad():
        layer.lora_B["default"].weight.fill_(1e-5)
        x = torch.randn(1, 7, layer.in_features)
        lora = layer.lora_B["default"](layer.lora_A["default"](x)) * layer.scaling["default"]
        assert 0 < float(lora.abs().max()) < 1e-3 * float(layer.base_layer(x).abs().mean())

        def moved() -> torch.Tensor:
            return layer(x).float() - layer.base_layer(x).float()

        with frozen_linears_in_bf16(model):
            frozen = moved()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            rounded = moved()
    assert torch.allclose(frozen, lora, rtol=0, atol=1e-6)  # float32 rounding of outputs ~1
    assert float((rounded - lora).abs().mean()) > 0.3 * float(lora.abs().mean())


def test_a_bf16_training_curve_follows_the_float32_one(tiny_model: Path, triples_file: Path,
                                                       tmp_path: Path) -> None:
    """Eight steps of the real loop, same data and seed: the curves agree to well under the
    distance the model travels, and the run says what it computed in."""
    from trainer.config import LetiConfig
    from trainer.events import read_events
    from trainer.train import train

    curves = {}
    for precision in ("fp32", "bf16"):
        out = tmp_path / precision
        result = train(LetiConfig(
            data=triples_file, output_dir=out, base_model=str(tiny_model), lora_rank=8,
            lora_dropout=0.0, batch_size=3, max_steps=8, epochs=100.0, save_every=0,
            code_ratio=0.0, learning_rate=1e-2, validate_load=False, device="cpu",
            precision=precision))
        curves[precision] = [h["loss"] for h in result.metrics["history"]]
        start = next(e for e in read_events(out / "events.jsonl") if e["event"] == "start")
        assert start["precision"] == {"fp32": "fp32", "bf16": "bf16-frozen"}[precision]
        assert result.metrics["precision"] == start["precision"]  # and its metrics.json
    fp32, bf16 = curves["fp32"], curves["bf16"]
    assert fp32[0] - fp32[-1] > 0.1  # the model did learn
    assert bf16 == pytest.approx(fp32, abs=0.02)
