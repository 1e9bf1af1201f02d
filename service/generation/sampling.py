"""Batched sampling for a decoder-only model on a KV cache: the embedded backend's decode loop.

Written out instead of calling ``model.generate`` for three reasons: each row draws from its own
seeded generator (no other row consumes its randomness, so seeded requests repeat); stop sequences
are found on the decoded tail, so token counts and the cut are exact; and rows that finish leave
the batch (their KV rows are dropped), so one long sample does not keep 31 finished ones busy.
Prompts are left-padded, positions come from the attention mask; the token prefix all prompts
share (chat template, task lead-in) is prefilled once, each distinct prompt once, and its cache
is repeated for its ``n`` samples.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

from service.generation.types import FinishReason, SamplingParams

_TOP_K_FIRST = 256  # nucleus search looks at the top 256 tokens first, the full vocabulary if needed


@dataclass
class RawSample:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: FinishReason


def row_seed(seed: int, prompt_index: int, sample_index: int) -> int:
    """The seed for sample ``j`` of prompt ``i``: stable across runs and processes."""
    digest = hashlib.blake2b(f"{seed}:{prompt_index}:{sample_index}".encode(), digest_size=8)
    return int.from_bytes(digest.digest(), "big") >> 1


def _choose(logits: Any, params: SamplingParams, generators: list[Any]) -> Any:
    """One token per row: greedy at temperature 0, else temperature + nucleus (top-p) sampling."""
    import torch

    if params.temperature == 0:
        return logits.argmax(-1)
    probs = torch.softmax(logits / params.temperature, dim=-1)
    k = min(_TOP_K_FIRST, probs.shape[-1])
    top_probs, top_ids = probs.topk(k, dim=-1)  # sorted, descending
    choices = []
    for row, gen in enumerate(generators):
        p, ids = top_probs[row], top_ids[row]
        if params.top_p < 1 and float(p.sum()) < params.top_p and k < probs.shape[-1]:
            p, ids = probs[row].sort(descending=True)  # the nucleus is wider than the top k
        if params.top_p < 1:
            keep = (p.cumsum(-1) - p) < params.top_p  # always keeps the most likely token
            p, ids = p[keep], ids[keep]
        elif k < probs.shape[-1]:
            p, ids = probs[row], torch.arange(probs.shape[-1], device=probs.device)
        choices.append(ids[torch.multinomial(p, 1, generator=gen)])
    return torch.cat(choices)


def _stop_hit(tokenizer: Any, tokens: list[int], stops: tuple[str, ...], window: int) -> bool:
    tail = tokenizer.decode(tokens[-window:], skip_special_tokens=False)
    return any(s in tail for s in stops)


def _final_text(tokenizer: Any, tokens: list[int], eos_ids: set[int], stops: tuple[str, ...]) -> str:
    if tokens and tokens[-1] in eos_ids:
        tokens = tokens[:-1]
    text = tokenizer.decode(tokens, skip_special_tokens=True)
    cuts = [i for i in (text.find(s) for s in stops) if i >= 0]
    return text[:min(cuts)] if cuts else text


def sample_batch(model: Any, tokenizer: Any, prompts: list[str], params: SamplingParams,
                 seeds: list[list[int]], encode_kwargs: dict[str, bool],
                 guard: Callable[[], AbstractContextManager[Any]] = nullcontext,
                 prefill_tokens: int = 128) -> list[list[RawSample]]:
    """``len(seeds[i])`` samples of prompt ``i`` (``seeds[i][j]`` seeds sample ``j``), in one batch.

    Every forward pass runs inside ``guard()``: the embedded backend takes its model lock and
    activates this batch's adapter there, so adapters can be loaded between two forward passes.
    The prompts are prefilled in slices of about ``prefill_tokens`` tokens (all rows together),
    so no single pass holds the lock for long."""
    import torch
    from transformers import DynamicCache

    device = model.device
    counts = [len(row) for row in seeds]
    if len(counts) != len(prompts) or min(counts, default=1) < 1:
        raise ValueError("seeds must hold at least one seed per prompt")
    token_lists = tokenizer(prompts, **encode_kwargs)["input_ids"]
    prompt_tokens = [len(t) for t in token_lists]
    if min(prompt_tokens) < 1:
        raise ValueError("a prompt encodes to no tokens")
    limit = getattr(model.config, "max_position_embeddings", None)
    if limit is not None and max(prompt_tokens) + params.max_new_tokens > limit:
        raise ValueError(f"prompt of {max(prompt_tokens)} tokens + max_new_tokens "
                         f"{params.max_new_tokens} exceeds the model's context of {limit}")
    eos_ids = _eos_ids(model, tokenizer)
    window = 4 * max((len(s) for s in params.stop), default=0) + 2
    generators = [torch.Generator(device=device).manual_seed(s) for row in seeds for s in row]

    rows = sum(counts)
    starts = [sum(counts[:i]) for i in range(len(prompts))]
    active = list(range(rows))  # the original row of each batch position
    tokens: list[list[int]] = [[] for _ in range(rows)]
    finish: list[FinishReason] = ["length"] * rows
    cache = DynamicCache(config=model.config)
    shared = _shared_prefix(token_lists)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0  # masked
    ids, suffix_mask = _left_padded([t[shared:] for t in token_lists], pad_id, device)
    mask = torch.cat([suffix_mask.new_ones((len(prompts), shared)), suffix_mask], dim=-1)
    positions = ((mask.cumsum(-1) - 1).clamp(min=0))[:, shared:]
    with torch.inference_mode():
        if shared:  # the chat template and task lead-in, common to every prompt: once
            with guard():
                model(input_ids=torch.tensor([token_lists[0][:shared]], device=device),
                      position_ids=torch.arange(shared, device=device)[None],
                      past_key_values=cache, use_cache=True, logits_to_keep=1)
            cache.batch_select_indices(torch.zeros(len(prompts), dtype=torch.long,
                                                   device=device))
        width = max(1, prefill_tokens // len(prompts))
        for start in range(0, ids.shape[1], width):
            end = start + width
            with guard():
                out = model(input_ids=ids[:, start:end], attention_mask=mask[:, :shared + end],
                            position_ids=positions[:, start:end], past_key_values=cache,
                            use_cache=True, logits_to_keep=1)
        logits = out.logits[:, -1, :].float()
        if rows > len(prompts):  # prefill each prompt once, then fan out its samples
            fan = torch.repeat_interleave(torch.arange(len(prompts), device=device),
                                          torch.tensor(counts, device=device))
            cache.batch_select_indices(fan)
            logits, mask, positions = logits[fan], mask[fan], positions[fan]
        last_pos = positions[:, -1:]
        for _ in range(params.max_new_tokens):
            chosen = _choose(logits, params, [generators[r] for r in active])
            keep = []
            for b, (r, tok) in enumerate(zip(active, chosen.tolist(), strict=True)):
                tokens[r].append(tok)
                if tok in eos_ids or (params.stop and _stop_hit(tokenizer, tokens[r],
                                                                 params.stop, window)):
                    finish[r] = "stop"
                elif len(tokens[r]) < params.max_new_tokens:
                    keep.append(b)
            if not keep:
                break
            if len(keep) < len(active):  # drop finished rows from the batch and the cache
                index = torch.tensor(keep, device=device)
                cache.batch_select_indices(index)
                mask, last_pos, chosen = mask[index], last_pos[index], chosen[index]
                active = [active[b] for b in keep]
            mask = torch.cat([mask, mask.new_ones((len(active), 1))], dim=-1)
            last_pos = last_pos + 1
            with guard():
                out = model(input_ids=chosen[:, None], attention_mask=mask,
                            position_ids=last_pos, past_key_values=cache, use_cache=True)
            logits = out.logits[:, -1, :].float()
    return [[RawSample(_final_text(tokenizer, tokens[starts[i] + j], eos_ids, params.stop),
                       prompt_tokens[i], len(tokens[starts[i] + j]), finish[starts[i] + j])
             for j in range(counts[i])] for i in range(len(prompts))]


def _shared_prefix(token_lists: list[list[int]], minimum: int = 8) -> int:
    """Tokens every prompt starts with (keeping at least one of each prompt to prefill)."""
    if len(token_lists) < 2:
        return 0
    shortest = min(len(t) for t in token_lists) - 1
    n = 0
    while n < shortest and all(t[n] == token_lists[0][n] for t in token_lists):
        n += 1
    return n if n >= minimum else 0


def _left_padded(token_lists: list[list[int]], pad_id: int, device: Any) -> tuple[Any, Any]:
    import torch

    width = max(len(t) for t in token_lists)
    ids = torch.tensor([[pad_id] * (width - len(t)) + t for t in token_lists], device=device)
    mask = torch.tensor([[0] * (width - len(t)) + [1] * len(t) for t in token_lists],
                        device=device)
    return ids, mask


def _eos_ids(model: Any, tokenizer: Any) -> set[int]:
    ids: set[int] = set()
    for source in (getattr(model, "generation_config", None), model.config):
        value = getattr(source, "eos_token_id", None)
        if value is not None:
            ids.update(value if isinstance(value, (list, tuple)) else [value])
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    return ids
