"""Fixtures for the generation tests: the real SmolLM2 tokenizer, tiny random Llama models built
from a config in memory, and two LoRA adapters trained for a few steps on different data."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")

TINY = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 1024,
        "tie_word_embeddings": True}
LORA_TARGETS = ["q_proj", "v_proj", "o_proj", "up_proj", "down_proj"]
# What each adapter is trained to say: its outputs identify it.
ADAPTER_TEXTS = {"apple": "apple apple apple apple apple apple apple apple",
                 "zebra": "zebra zebra zebra zebra zebra zebra zebra zebra"}


@pytest.fixture(scope="session")
def smol_tokenizer() -> Any:
    """The real SmolLM2 tokenizer (from the HF copy of the packaged GGUF; made once, cached)."""
    from trainer.base_model import load_tokenizer, resolve_model_source

    return load_tokenizer(resolve_model_source(None))


@pytest.fixture(scope="session")
def tiny_base(smol_tokenizer: Any) -> Any:
    """A 2-layer random Llama with SmolLM2's vocabulary: real tokenizer, instant forward."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(smol_tokenizer), bos_token_id=1,
                         eos_token_id=smol_tokenizer.eos_token_id,
                         pad_token_id=smol_tokenizer.pad_token_id, **TINY)
    return LlamaForCausalLM(config).eval()


@pytest.fixture
def tiny_model(tiny_base: Any) -> Any:
    """A private copy of the tiny model (adapters are added to the model in place)."""
    return copy.deepcopy(tiny_base)


def train_lora(base: Any, tokenizer: Any, text: str, out: Path, *, rank: int = 8,
               steps: int = 30, **extra: Any) -> Path:
    """A few AdamW steps of peft LoRA on one repeated text: enough to make outputs distinct."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(1)
    model = get_peft_model(copy.deepcopy(base).train(),
                           LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=LORA_TARGETS,
                                      task_type="CAUSAL_LM", **extra))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-2)
    ids = tokenizer([text] * 4, return_tensors="pt").input_ids
    for _ in range(steps):
        model(input_ids=ids, labels=ids).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def adapters(tiny_base: Any, smol_tokenizer: Any, tmp_path_factory: pytest.TempPathFactory,
             ) -> dict[str, Path]:
    """Two adapters trained on different data: {"apple": dir, "zebra": dir}."""
    root = tmp_path_factory.mktemp("adapters")
    return {name: train_lora(tiny_base, smol_tokenizer, text, root / name)
            for name, text in ADAPTER_TEXTS.items()}


@pytest.fixture
def tiny_generator(tiny_model: Any, smol_tokenizer: Any) -> Any:
    from service.generation.embedded import EmbeddedGenerator

    return EmbeddedGenerator(tiny_model, smol_tokenizer, max_batch_size=8, max_lora_rank=16)


def masked(lengths: Any, width: int, dtype: Any) -> Any:
    """The additive mask over ``width`` columns that ``lengths`` stands for, [B, 1, 1, width]."""
    mask = torch.where(torch.arange(width)[None] < lengths[:, None], 0.0, float("-inf"))
    return mask.to(dtype)[:, None, None]


def attention_inputs(dtype: Any, head_dim: int, queries: int = 2) -> tuple[Any, Any, Any, Any]:
    """q [5, 3, queries, head_dim], keys and values [5, 3, 80, head_dim], and lengths across the
    ragged kernel's 32-column blocks and past column 20 (where the tests split parts)."""
    gen = torch.Generator().manual_seed(0)
    q, keys, values = (torch.randn(shape, generator=gen).to(dtype)
                       for shape in ((5, 3, queries, head_dim), (5, 3, 80, head_dim),
                                     (5, 3, 80, head_dim)))
    return q, keys, values, torch.tensor([21, 33, 80, 64, 47])
