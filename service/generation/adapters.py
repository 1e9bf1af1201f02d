"""Refuse adapters vLLM cannot serve, on both backends, so a policy that works embedded also
works behind vLLM: plain LoRA, rank within ``--max-lora-rank``, no added tokens, no
``modules_to_save`` (vLLM serves neither), no DoRA or LoRA bias.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from service.generation.types import AdapterError

# vLLM's --max-lora-rank accepts one of these (engine arg choices).
VLLM_MAX_LORA_RANKS: tuple[int, ...] = (1, 8, 16, 32, 64, 128, 256, 320, 512)
_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")
_ADDED_TOKEN_FILES = ("new_embeddings.safetensors", "new_embeddings.bin", "added_tokens.json")


def read_adapter_config(path: str | Path) -> dict[str, Any]:
    """The adapter's ``adapter_config.json``; AdapterError if the directory is not an adapter."""
    folder = Path(path)
    if not folder.is_dir():
        raise AdapterError(f"adapter directory {folder} does not exist")
    config_file = folder / "adapter_config.json"
    if not config_file.is_file():
        raise AdapterError(f"{folder} has no adapter_config.json: not a PEFT adapter directory")
    if not any((folder / w).is_file() for w in _WEIGHTS):
        raise AdapterError(f"{folder} has no adapter weights ({' or '.join(_WEIGHTS)})")
    try:
        config = json.loads(config_file.read_text())
    except json.JSONDecodeError as exc:
        raise AdapterError(f"{config_file} is not valid JSON: {exc}") from None
    if not isinstance(config, dict):
        raise AdapterError(f"{config_file} must hold a JSON object")
    return config


def check_lora_dir(path: str | Path, max_rank: int | None = None) -> dict[str, Any]:
    """The adapter config, after checking vLLM could load it; AdapterError says what to change."""
    config = read_adapter_config(path)
    problems = []
    if str(config.get("peft_type", "")).upper() != "LORA":
        problems.append(f"peft_type is {config.get('peft_type')!r}, only plain LORA is served")
    if config.get("modules_to_save"):
        problems.append(f"modules_to_save={config['modules_to_save']} (train without it)")
    if config.get("trainable_token_indices") or any(
            (Path(path) / f).exists() for f in _ADDED_TOKEN_FILES):
        problems.append("the adapter adds or trains tokens; markers must use the existing vocabulary")
    if config.get("use_dora"):
        problems.append("DoRA adapters are not served by vLLM")
    if config.get("lora_bias"):
        problems.append("LoRA bias is not served by vLLM")
    ranks = [config.get("r", 8), *dict(config.get("rank_pattern") or {}).values()]
    if max_rank is not None and max(ranks) > max_rank:
        problems.append(f"rank {max(ranks)} exceeds max_lora_rank {max_rank}")
    if problems:
        raise AdapterError(f"adapter {path} cannot be served: " + "; ".join(problems))
    return config
