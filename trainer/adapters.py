"""Is this adapter directory servable? Checked before a run is declared a success.

The rules are those of vLLM's LoRA loader (``vllm/lora/peft_helper.py`` and ``MaxLoRARanks``) plus
what the embedded backend needs: plain LoRA (no DoRA, no bias), a rank vLLM accepts, no
``modules_to_save`` (full copies of layers), no added tokens or resized embeddings, finite
weights, and weights that are not all zero (an untrained LoRA is a silent no-op). Finally the
adapter must load with peft onto the base model, and, when the trained model is at hand,
reproduce its logits.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trainer.train_config import VLLM_LORA_RANKS

CONFIG_FILE = "adapter_config.json"
WEIGHT_FILES = ("adapter_model.safetensors", "adapter_model.bin")
_EMBEDDING_NAMES = ("embed_tokens", "lm_head", "wte", "embed_in", "embed_out", "word_embeddings")
_TOKEN_FILES = ("added_tokens.json",)


class AdapterError(ValueError):
    """The adapter would not load in vLLM or the embedded backend; the message says why."""


@dataclass
class AdapterCheck:
    """What validation found (written into the metrics file)."""

    path: str
    rank: int
    alpha: float
    target_modules: list[str]
    tensors: int
    nonzero_b: int  # lora_B matrices with any non-zero entry (0 = an untrained, no-op adapter)
    loaded_with_peft: bool = False
    max_logit_diff: float | None = None
    problems: list[str] = field(default_factory=list)


def read_config(path: Path) -> dict[str, Any]:
    """The ``adapter_config.json`` of an adapter directory; AdapterError if it is not one."""
    path = Path(path)
    if not path.is_dir():
        raise AdapterError(f"adapter directory {path} does not exist")
    if not (path / CONFIG_FILE).is_file():
        raise AdapterError(f"{path} is not an adapter directory: {CONFIG_FILE} is missing")
    try:
        cfg = json.loads((path / CONFIG_FILE).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise AdapterError(f"{path / CONFIG_FILE} is not valid JSON: {exc}") from None
    if not isinstance(cfg, dict):
        raise AdapterError(f"{path / CONFIG_FILE} must hold a JSON object")
    return cfg


def servable_problems(path: Path, cfg: dict[str, Any],
                      max_rank: int | None = None) -> list[str]:
    """What would stop vLLM (and so the embedded backend, which refuses the same) from serving
    the adapter, judged from its config and file names alone (no torch, no weights read):
    the one rule both the trainer and the service's adapter loads apply. ``max_rank``: the
    server's ``--max-lora-rank``."""
    problems = []
    if str(cfg.get("peft_type", "")).upper() != "LORA":
        problems.append(f"peft_type is {cfg.get('peft_type')!r}: only plain LORA adapters are "
                        "served")
    rank = cfg.get("r")
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
        problems.append(f"rank r={rank!r} is not a positive integer")
    elif rank > min(max_rank or VLLM_LORA_RANKS[-1], VLLM_LORA_RANKS[-1]):
        # vLLM serves any rank up to its --max-lora-rank, itself one of VLLM_LORA_RANKS
        problems.append(f"rank {rank} exceeds max_lora_rank {max_rank or VLLM_LORA_RANKS[-1]}")
    if cfg.get("rank_pattern") or cfg.get("alpha_pattern"):
        problems.append("rank_pattern/alpha_pattern set: vLLM needs one rank for every module")
    if cfg.get("modules_to_save"):
        problems.append(f"modules_to_save={cfg['modules_to_save']}: vLLM only serves adapters "
                        "without modules_to_save (train with LoRA on projections only)")
    if cfg.get("use_dora"):
        problems.append("use_dora=true: vLLM does not serve DoRA adapters")
    if cfg.get("bias", "none") != "none" or cfg.get("lora_bias"):
        problems.append(f"bias={cfg.get('bias')!r}, lora_bias={cfg.get('lora_bias')!r}: vLLM "
                        "serves only bias='none' without a LoRA bias")
    if cfg.get("trainable_token_indices"):
        problems.append("trainable_token_indices set: the adapter changes token embeddings")
    targets = cfg.get("target_modules") or []
    targets = [targets] if isinstance(targets, str) else list(targets)
    bad = [t for t in targets if any(name in t for name in _EMBEDDING_NAMES)]
    if bad:
        problems.append(f"target_modules include embeddings/output head {bad}: adapt the "
                        "attention and MLP projections only")
    if not targets:
        problems.append("target_modules is empty")
    problems += [f"{name} present: the adapter adds tokens" for name in _TOKEN_FILES
                 if (path / name).exists()]
    if not any((path / w).is_file() for w in WEIGHT_FILES):
        problems.append(f"no weights file ({' or '.join(WEIGHT_FILES)})")
    return problems


def check_servable(path: Path, max_rank: int | None = None) -> dict[str, Any]:
    """The adapter's config once ``servable_problems`` finds nothing; AdapterError lists them."""
    cfg = read_config(path)
    problems = servable_problems(Path(path), cfg, max_rank)
    if problems:
        raise AdapterError(f"adapter {path} cannot be served:\n  - " + "\n  - ".join(problems))
    return cfg


def check_adapter_files(path: Path) -> AdapterCheck:
    """Static checks of config and weights (no base model needed); AdapterError lists problems."""
    from safetensors.torch import load_file

    path = Path(path)
    cfg = read_config(path)
    problems = servable_problems(path, cfg)
    weights = next((path / w for w in WEIGHT_FILES if (path / w).is_file()), None)
    tensors: dict[str, Any] = {}  # no weights file: servable_problems names it
    if weights is not None and weights.suffix == ".safetensors":
        tensors = load_file(str(weights))
    elif weights is not None:
        import torch

        tensors = torch.load(weights, map_location="cpu", weights_only=True)
    if weights is not None and not tensors:
        problems.append("the weights file holds no tensors")
    not_lora = [k for k in tensors if "lora_A" not in k and "lora_B" not in k]
    if not_lora:
        problems.append(f"weights other than LoRA matrices (e.g. {not_lora[0]}): full layer "
                        "copies or resized embeddings cannot be served by vLLM")
    bad = [k for k, v in tensors.items() if not bool(v.float().isfinite().all())]
    if bad:
        problems.append(f"non-finite values in {len(bad)} tensor(s), e.g. {bad[0]}")
    b_mats = [v for k, v in tensors.items() if "lora_B" in k]
    nonzero = sum(1 for v in b_mats if bool(v.abs().sum() > 0))
    if tensors and not nonzero:
        problems.append("every lora_B matrix is zero: the adapter is untrained and changes nothing")
    if problems:
        raise AdapterError(f"adapter {path} cannot be served:\n  - " + "\n  - ".join(problems))
    targets = cfg.get("target_modules") or []
    return AdapterCheck(str(path), int(cfg["r"]), float(cfg.get("lora_alpha") or cfg["r"]),
                        sorted([targets] if isinstance(targets, str) else targets),
                        len(tensors), nonzero)


def validate_adapter(path: Path, base_model: Any = None, *, trained_model: Any = None,
                     probe_ids: Any = None, atol: float = 1e-3) -> AdapterCheck:
    """Static checks, then load with peft onto ``base_model`` (a fresh copy: it gets modified)
    and, given ``trained_model`` and ``probe_ids``, compare their logits."""
    check = check_adapter_files(path)
    if base_model is None:
        return check
    import torch
    from peft import PeftModel

    try:
        loaded = PeftModel.from_pretrained(base_model, str(path), is_trainable=False)
    except Exception as exc:
        raise AdapterError(f"adapter {path} does not load with peft on the base model: {exc}") \
            from exc
    check.loaded_with_peft = True
    if trained_model is not None and probe_ids is not None:
        loaded.eval()
        was_training = trained_model.training
        trained_model.eval()
        with torch.no_grad():
            device = next(loaded.parameters()).device
            a = loaded(input_ids=probe_ids.to(device)).logits.float().cpu()
            b = trained_model(input_ids=probe_ids.to(next(trained_model.parameters()).device)
                              ).logits.float().cpu()
        trained_model.train(was_training)
        check.max_logit_diff = float((a - b).abs().max())
        if check.max_logit_diff > atol * max(1.0, float(b.abs().max())):
            raise AdapterError(f"adapter {path} loads but does not reproduce the trained model "
                               f"(max logit difference {check.max_logit_diff:.3g})")
    return check
