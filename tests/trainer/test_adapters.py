"""Adapter validation: only what vLLM and the embedded backend can serve is accepted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from trainer.adapters import AdapterError, check_adapter_files, validate_adapter
from trainer.base_model import load_base_model

PROJECTIONS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def save_lora(model_dir: Path, out: Path, *, train: bool = True, **lora: object) -> Path:
    """A LoRA adapter on the tiny model; ``train`` perturbs B so it is not a no-op."""
    from peft import LoraConfig, get_peft_model

    model, _ = load_base_model(str(model_dir), device="cpu")
    settings = {"r": 8, "lora_alpha": 16, "target_modules": PROJECTIONS, **lora}
    peft_model = get_peft_model(model, LoraConfig(task_type="CAUSAL_LM", **settings))
    if train:
        torch.manual_seed(0)
        with torch.no_grad():
            for name, p in peft_model.named_parameters():
                if "lora_B" in name:
                    p.add_(torch.randn_like(p) * 0.05)
    peft_model.save_pretrained(out)
    return out


def test_a_trained_lora_adapter_passes_and_loads(tiny_model: Path, tmp_path: Path) -> None:
    path = save_lora(tiny_model, tmp_path / "a")
    base, _ = load_base_model(str(tiny_model), device="cpu")
    check = validate_adapter(path, base)
    assert check.loaded_with_peft and check.rank == 8
    assert check.target_modules == sorted(PROJECTIONS) and check.nonzero_b == 14


def test_modules_to_save_adapter_is_rejected(tiny_model: Path, tmp_path: Path) -> None:
    path = save_lora(tiny_model, tmp_path / "a", modules_to_save=["lm_head"])
    with pytest.raises(AdapterError, match="modules_to_save"):
        check_adapter_files(path)


def test_untrained_adapter_is_rejected_as_a_no_op(tiny_model: Path, tmp_path: Path) -> None:
    with pytest.raises(AdapterError, match="untrained"):
        check_adapter_files(save_lora(tiny_model, tmp_path / "a", train=False))


@pytest.mark.parametrize("lora,reason", [
    ({"r": 1024, "lora_alpha": 2048}, "exceeds max_lora_rank 512"),
    ({"use_dora": True}, "DoRA"),
    ({"bias": "lora_only"}, "bias"),
    ({"target_modules": ["q_proj", "embed_tokens"]}, "embeddings"),
])
def test_features_vllm_cannot_serve_are_rejected(tiny_model: Path, tmp_path: Path,
                                                 lora: dict, reason: str) -> None:
    with pytest.raises(AdapterError, match=reason):
        check_adapter_files(save_lora(tiny_model, tmp_path / "a", **lora))


def test_added_tokens_and_missing_weights_are_rejected(tiny_model: Path, tmp_path: Path) -> None:
    path = save_lora(tiny_model, tmp_path / "a")
    (path / "added_tokens.json").write_text(json.dumps({"<new>": 999}))
    with pytest.raises(AdapterError, match="adds tokens"):
        check_adapter_files(path)
    (path / "added_tokens.json").unlink()
    (path / "adapter_model.safetensors").unlink()
    with pytest.raises(AdapterError, match="no weights file"):
        check_adapter_files(path)
    with pytest.raises(AdapterError, match="not an adapter directory"):
        check_adapter_files(tmp_path)


def test_adapter_that_does_not_reproduce_the_trained_model_is_rejected(
        tiny_model: Path, tmp_path: Path) -> None:
    from peft import PeftModel

    path = save_lora(tiny_model, tmp_path / "a")
    base, _ = load_base_model(str(tiny_model), device="cpu")
    trained = PeftModel.from_pretrained(base, str(path))
    with torch.no_grad():  # the in-memory model drifts from what was saved
        next(p for n, p in trained.named_parameters() if "lora_B" in n).add_(1.0)
    fresh, _ = load_base_model(str(tiny_model), device="cpu")
    with pytest.raises(AdapterError, match="does not reproduce"):
        validate_adapter(path, fresh, trained_model=trained, probe_ids=torch.tensor([[1, 2, 3]]))
