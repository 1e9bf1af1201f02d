"""Refuse adapters vLLM cannot serve, on both backends, so a policy that works embedded also
works behind vLLM. The rule itself is the trainer's (``trainer.adapters.servable_problems``:
plain LoRA, a rank vLLM accepts and within ``--max-lora-rank``, no ``rank_pattern``, no added
tokens, no ``modules_to_save``, no DoRA or LoRA bias), so a run the trainer declares servable
is one the service loads; here its refusal becomes the generators' ``AdapterError``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from service.generation.types import AdapterError
from trainer import adapters as rule


def check_lora_dir(path: str | Path, max_rank: int | None = None) -> dict[str, Any]:
    """The adapter config, after checking vLLM could load it; AdapterError says what to change."""
    try:
        return rule.check_servable(Path(path), max_rank)
    except rule.AdapterError as exc:
        raise AdapterError(str(exc)) from None
