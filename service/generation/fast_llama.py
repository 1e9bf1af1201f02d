"""A compact forward pass for Llama-architecture models: the embedded backend's fast path.

transformers' ``LlamaForCausalLM`` spends most of a small-batch CPU decode step in framework
overhead (mask building, cache objects, many small kernels per layer, peft's per-module LoRA
branches). This module reads the same weights once into a few dense matrices per layer (query,
key and value projections fused into one matrix, gate and up into another) and runs the same
arithmetic with a handful of tensor operations per layer, on a ``SlotCache`` that rows enter and
leave without copying the batch. A LoRA adapter becomes its own merged weight set (``W + BA``,
as peft's ``merge`` computes it), so serving an adapter costs nothing per token.

It reproduces the reference forward of transformers (RMSNorm, rotary embeddings from the model's
own rotary module, grouped-query attention, SiLU-gated MLP); tests/generation/test_fast_path.py
checks the tokens against it. Models it cannot reproduce exactly (other architectures, sliding
windows, dynamic rotary scaling, LoRA on other modules) are reported by ``unsupported`` and stay
on the reference path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from service.generation.ragged_attention import kernel
from service.generation.slot_cache import SlotCache

_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
_DYNAMIC_ROPE = ("dynamic", "longrope")  # cos/sin depend on the sequence length: not tabulated


def packable(dtype: Any) -> bool:
    """Whether oneDNN can prepack CPU weights of ``dtype``: float32 always, bfloat16 where the
    CPU multiplies it natively (``native_bf16``; elsewhere torch emulates it, slowly)."""
    import torch

    from trainer.base_model import native_bf16

    return dtype == torch.float32 or (dtype == torch.bfloat16 and native_bf16("cpu"))


class Dense:
    """A linear layer's weight, prepacked for oneDNN on CPU where torch offers it (faster than
    the default at decode batch sizes, docs/BENCHMARKS.md)."""

    def __init__(self, weight: Any, bias: Any, pack_rows: int | None) -> None:
        import torch

        self.weight, self.bias, self._packed = weight.contiguous(), bias, None
        if pack_rows and weight.device.type == "cpu" and packable(weight.dtype):
            try:
                self._packed = torch.ops.mkldnn._reorder_linear_weight(self.weight, pack_rows)
                self.weight = None  # the packed copy is all that runs: keep one copy in memory
            except (AttributeError, RuntimeError):  # a torch without oneDNN: plain linear
                self._packed = None

    def __call__(self, x: Any) -> Any:
        import torch
        import torch.nn.functional as F

        if self._packed is not None:
            return torch.ops.mkldnn._linear_pointwise(x, self._packed, self.bias, "none", [], "")
        return F.linear(x, self.weight, self.bias)


@dataclass(frozen=True)
class LayerWeights:
    """One decoder layer's weights, fused for few matmuls."""

    attn_norm: Any
    qkv: Dense  # [(q_heads + 2 * kv_heads) * head_dim, hidden]
    out: Dense
    mlp_norm: Any
    gate_up: Dense  # [2 * intermediate, hidden]
    down: Dense


def _dense(module: Any, adapter: str | None) -> tuple[Any, Any]:
    """(weight, bias) of a linear layer, with ``adapter``'s LoRA merged in when it has one."""
    base = getattr(module, "base_layer", module)
    weight, bias = base.weight.detach(), base.bias
    if adapter is not None and adapter in getattr(module, "lora_A", {}):
        weight = weight + module.get_delta_weight(adapter).to(weight.dtype)
    return weight, (bias.detach() if bias is not None else None)


def _cat_bias(biases: list[Any], weights: list[Any]) -> Any:
    import torch

    if all(b is None for b in biases):
        return None
    return torch.cat([b if b is not None else w.new_zeros(w.shape[0])
                      for b, w in zip(biases, weights, strict=True)])


def _rope_kind(config: Any) -> str:
    for name in ("rope_parameters", "rope_scaling"):
        params = getattr(config, name, None)
        if isinstance(params, dict):
            return str(params.get("rope_type") or params.get("type") or "default")
    return "default"


def unsupported(model: Any) -> str | None:
    """Why the fast path cannot run ``model`` exactly, or None when it can."""
    config = getattr(model, "config", None)
    if getattr(config, "model_type", None) != "llama":
        return f"model type {getattr(config, 'model_type', None)!r} (only llama is implemented)"
    if getattr(config, "hidden_act", "silu") != "silu":
        return f"activation {config.hidden_act!r}"
    if _rope_kind(config) in _DYNAMIC_ROPE:
        return f"rotary scaling {_rope_kind(config)!r} depends on the sequence length"
    if getattr(config, "pretraining_tp", 1) not in (None, 1):
        return "pretraining_tp > 1"
    return None


def adapter_unsupported(model: Any, adapter: str) -> str | None:
    """Why ``adapter`` (loaded into ``model`` by peft) cannot be merged here, or None."""
    for name, module in model.named_modules():
        if adapter in getattr(module, "lora_embedding_A", {}):
            return f"LoRA on the embedding ({name})"
        if adapter in getattr(module, "lora_A", {}):
            leaf = name.rsplit(".", 1)[-1]
            if leaf not in (*_PROJECTIONS, "lm_head") or not hasattr(module, "get_delta_weight"):
                return f"LoRA on {name}"
    return None


class FastLlama:
    """The fast forward pass over one base model and any number of merged adapter sets."""

    def __init__(self, model: Any, pack_rows: int | None = 64) -> None:
        import torch

        reason = unsupported(model)
        if reason is not None:
            raise ValueError(f"the fast path cannot run this model: {reason}")
        config = model.config
        self.model = model
        self.device, self.dtype = model.device, model.dtype
        self.hidden = config.hidden_size
        self.q_heads = config.num_attention_heads
        self.kv_heads = getattr(config, "num_key_value_heads", None) or self.q_heads
        self.head_dim = getattr(config, "head_dim", None) or self.hidden // self.q_heads
        self.eps = config.rms_norm_eps
        self.scale = self.head_dim ** -0.5
        self.num_layers = config.num_hidden_layers
        self.max_positions = config.max_position_embeddings
        inner = model.model
        self.embed = inner.embed_tokens.weight.detach()
        self.final_norm = inner.norm.weight.detach()
        with torch.inference_mode():  # the model's own rotary module: identical cos/sin
            positions = torch.arange(self.max_positions, device=self.device)[None]
            probe = self.embed.new_zeros(1)
            cos, sin = inner.rotary_emb(probe, positions)
        self.cos, self.sin = cos[0], sin[0]  # [positions, head_dim]
        self.pack_rows = pack_rows
        self._sets: dict[str | None, tuple[list[LayerWeights], Dense]] = {}
        self.weights(None)
        if self.device.type == "cpu":
            kernel()  # built (or found cached) with the model, not in the first request

    # -- weights ---------------------------------------------------------------------------------
    def weights(self, adapter: str | None) -> tuple[list[LayerWeights], Dense]:
        """The (layers, lm_head) set for ``adapter`` (None: base), merged once and kept."""
        found = self._sets.get(adapter)
        if found is None:
            found = self._sets[adapter] = self._build(adapter)
        return found

    def forget(self, adapter: str) -> None:
        """Drop an adapter's merged set (when the generator unloads it)."""
        self._sets.pop(adapter, None)

    def _build(self, adapter: str | None) -> tuple[list[LayerWeights], Dense]:
        import torch

        pack = self.pack_rows

        def fused(*parts: tuple[Any, Any]) -> Dense:
            weights = [w for w, _ in parts]
            return Dense(torch.cat(weights), _cat_bias([b for _, b in parts], weights), pack)

        layers = []
        with torch.no_grad():
            for layer in self.model.model.layers:
                attn, mlp = layer.self_attn, layer.mlp
                layers.append(LayerWeights(
                    attn_norm=layer.input_layernorm.weight.detach(),
                    qkv=fused(*(_dense(getattr(attn, p), adapter)
                                for p in ("q_proj", "k_proj", "v_proj"))),
                    out=Dense(*_dense(attn.o_proj, adapter), pack),
                    mlp_norm=layer.post_attention_layernorm.weight.detach(),
                    gate_up=fused(_dense(mlp.gate_proj, adapter), _dense(mlp.up_proj, adapter)),
                    down=Dense(*_dense(mlp.down_proj, adapter), pack)))
            head = Dense(*_dense(self.model.lm_head, adapter), pack)
        return layers, head

    # -- arithmetic ------------------------------------------------------------------------------
    def _norm(self, x: Any, weight: Any) -> Any:
        """LlamaRMSNorm, the same operations in the same order (in float32, as it does)."""
        import torch

        wide = x.float()
        variance = wide.pow(2).mean(-1, keepdim=True)
        return weight * (wide * torch.rsqrt(variance + self.eps)).to(x.dtype)

    def _rotate(self, x: Any, cos: Any, sin: Any) -> Any:
        """Rotary embedding (``x * cos + rotate_half(x) * sin``) for x [..., heads, head_dim]."""
        import torch

        half = self.head_dim // 2
        rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
        return x * cos + rotated * sin

    def _mlp(self, h: Any, w: LayerWeights) -> Any:
        import torch.nn.functional as F

        gate, up = w.gate_up(self._norm(h, w.mlp_norm)).chunk(2, dim=-1)
        return w.down(F.silu(gate) * up)

    def _split(self, x: Any, w: LayerWeights, cos: Any, sin: Any) -> tuple[Any, Any, Any]:
        """Rotated queries and keys, and values, of normed ``x`` [tokens, hidden], each
        [tokens, heads, head_dim]. Queries and keys sit side by side in the fused projection's
        output, so one rotation covers both."""
        qkv = w.qkv(self._norm(x, w.attn_norm))
        tokens, heads = x.shape[0], self.q_heads + self.kv_heads
        qk = self._rotate(qkv[:, :heads * self.head_dim].reshape(tokens, heads, self.head_dim),
                          cos, sin)
        v = qkv[:, heads * self.head_dim:].reshape(tokens, self.kv_heads, self.head_dim)
        return qk[:, :self.q_heads], qk[:, self.q_heads:], v

    def prefill(self, weights: tuple[list[LayerWeights], Dense], tokens: list[int],
                cache: SlotCache, group: int, start: int) -> Any:
        """Run prompt ``tokens`` at positions ``start``.. into ``group``'s prompt (which already
        holds its first ``start`` tokens); returns the last token's logits [vocab], in the
        model's dtype (the sampler converts them once)."""
        import torch
        import torch.nn.functional as F

        layers, head = weights
        end = start + len(tokens)
        ids = torch.tensor(tokens, device=self.device)
        cos, sin = self.cos[start:end, None], self.sin[start:end, None]
        # Causal over the whole prompt: token i sees every cached token and the new ones to i.
        causal = (torch.arange(end, device=self.device)[None]
                  <= torch.arange(start, end, device=self.device)[:, None])
        h = self.embed[ids]
        for index, w in enumerate(layers):
            q, k, v = self._split(h, w, cos, sin)
            keys, values = cache.write_prompt(index, group, start, k, v)
            attn = F.scaled_dot_product_attention(
                q.transpose(0, 1)[None], keys, values, attn_mask=causal, scale=self.scale,
                enable_gqa=self.kv_heads != self.q_heads)
            h = h + w.out(attn[0].transpose(0, 1).reshape(len(tokens), -1))
            h = h + self._mlp(h, w)
        cache.prompt_lengths[group] = end
        return head(self._norm(h[-1:], self.final_norm))[0]

    def decode(self, weights: tuple[list[LayerWeights], Dense], tokens: Any,
               cache: SlotCache) -> Any:
        """One token for each live row of ``cache`` (``tokens`` [rows]), each at its own next
        position; returns their logits [rows, vocab], in the model's dtype (the sampler
        converts them once)."""
        layers, head = weights
        positions = cache.positions()
        cos, sin = self.cos[positions][:, None], self.sin[positions][:, None]
        spans = cache.step_spans()
        h = self.embed[tokens]
        for index, w in enumerate(layers):
            q, k, v = self._split(h, w, cos, sin)
            h = h + w.out(cache.attend(index, q, k, v, spans, self.scale))
            h = h + self._mlp(h, w)
        cache.advance()
        return head(self._norm(h, self.final_norm))
