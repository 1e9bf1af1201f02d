"""The precision rule (``auto`` per device) and a bf16 training step that stays close to float32,
on a tiny random Llama."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from trainer import base_model
from trainer import train as train_module
from trainer.train import training_precision


@pytest.mark.parametrize(("native", "cpu_ok", "name", "autocast"), [
    (True, False, "fp32", False),  # today: bf16 did not pass the curve check on CPU
    (True, True, "bf16-autocast", True),  # once it does: fp32 weights, bf16 matmuls
    (False, True, "fp32", False),  # emulated bf16 is slower than fp32: never
])
def test_auto_on_cpu_is_bf16_only_where_native_and_checked(
        monkeypatch: pytest.MonkeyPatch, native: bool, cpu_ok: bool, name: str,
        autocast: bool) -> None:
    monkeypatch.setattr(base_model, "native_bf16", lambda device: native)
    monkeypatch.setattr(train_module, "AUTO_BF16_ON_CPU", cpu_ok)
    p = training_precision("auto", "cpu")
    assert (p.name, p.weights, p.autocast_bf16) == (name, torch.float32, autocast)


def test_explicit_precisions_ignore_the_capability(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(base_model, "native_bf16", lambda device: True)
    assert training_precision("fp32", "cpu").name == "fp32"
    assert training_precision("fp32", "cuda").name == "fp32"
    monkeypatch.setattr(base_model, "native_bf16", lambda device: False)
    assert training_precision("bf16", "cpu").name == "bf16-autocast"
    cuda = training_precision("bf16", "cuda")  # on a GPU, bf16 weights as before
    assert (cuda.weights, cuda.autocast_bf16) == (torch.bfloat16, False)


def test_auto_on_cuda_follows_the_capability(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(base_model, "native_bf16", lambda device: device.startswith("cuda"))
    assert training_precision("auto", "cuda").weights == torch.bfloat16
    monkeypatch.setattr(base_model, "native_bf16", lambda device: False)
    assert training_precision("auto", "cuda").name == "fp32"


def test_native_bf16_is_a_plain_answer_on_any_machine() -> None:
    assert isinstance(base_model.native_bf16("cpu"), bool)


def _step(model: torch.nn.Module, batch: list, pad_id: int, autocast: bool) -> tuple[float, dict]:
    from trainer.packing import micro_batch_loss

    model.zero_grad(set_to_none=True)
    ctx = training_precision("bf16" if autocast else "fp32", "cpu").autocast()
    with ctx:
        loss, _ = micro_batch_loss(model, batch, packing=True, pad_id=pad_id, device="cpu")
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return float(loss), grads


def test_a_bf16_autocast_step_gives_the_float32_loss_and_gradients(tiny_model: Path) -> None:
    """The same LoRA model and packed micro-batch: bf16 matmuls move the loss by bf16 rounding
    (~1e-3 relative), the LoRA weights stay float32 masters and their gradients point the same
    way."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from trainer.batches import Encoded

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0,
                                             target_modules=["q_proj", "v_proj", "down_proj"],
                                             init_lora_weights=False))  # B != 0: real gradients
    tok = AutoTokenizer.from_pretrained(tiny_model)
    texts = ["def add(a, b):\n    return a + b\n", "Reward: bad\nFeedback:\nTest 1 failed",
             "class Foo:\n    def __init__(self):\n        self.x = [1, 2, 3]\n"]
    batch = [Encoded(tuple(ids), tuple(ids), "leti") for ids in
             (tok(t)["input_ids"] for t in texts)]
    fp32_loss, fp32_grads = _step(model, batch, tok.pad_token_id, autocast=False)
    bf16_loss, bf16_grads = _step(model, batch, tok.pad_token_id, autocast=True)
    assert bf16_loss == pytest.approx(fp32_loss, rel=1e-2)
    assert bf16_loss != fp32_loss  # the control: autocast did compute in bf16
    assert fp32_grads.keys() == bf16_grads.keys() and fp32_grads
    for name, g in fp32_grads.items():
        assert bf16_grads[name].dtype == torch.float32  # float32 master weights
        cos = torch.nn.functional.cosine_similarity(g.flatten(), bf16_grads[name].flatten(), 0)
        assert float(cos) > 0.99, name


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
        assert start["precision"] == {"fp32": "fp32", "bf16": "bf16-autocast"}[precision]
    fp32, bf16 = curves["fp32"], curves["bf16"]
    assert fp32[0] - fp32[-1] > 0.1  # the model did learn
    assert bf16 == pytest.approx(fp32, abs=0.02)
