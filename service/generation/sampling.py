"""Batched sampling for a decoder-only model on a KV cache: the embedded backend's decode loop.

Written out instead of calling ``model.generate`` for four reasons: each row draws from its own
seeded generator (no other row consumes its randomness, so seeded requests repeat); stop
sequences are found on the decoded tail, so token counts and the cut are exact; rows that finish
leave the batch and waiting rows take their place (``DecodeBatch``), so the batch stays full
until the request runs out of rows; and prefill is shared: the token prefix all prompts share
(chat template, task lead-in) once, each distinct prompt once for its ``n`` samples.
"""

from __future__ import annotations

import hashlib
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

from service.generation.compute import Steps, blocking
from service.generation.decode_batch import DecodeBatch, Guard
from service.generation.token_choice import choose_tokens
from service.generation.types import FinishReason, SamplingParams

# Most prompt tokens in one forward pass, both decode paths: on a CPU a 256-token pass costs
# about one 64-row decode step, so a hot swap waits no longer for it and most prompts take one
# pass instead of several (docs/GENERATION.md).
PREFILL_TOKENS = 256


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


def encode_request(tokenizer: Any, prompts: list[str], params: SamplingParams,
                   seeds: list[list[int]], encode_kwargs: dict[str, bool],
                   context: int | None) -> tuple[list[int], list[list[int]]]:
    """(samples per prompt, prompt token ids), after checking the request fits: a seed per
    sample, no empty prompt, prompt + ``max_new_tokens`` within ``context``. Both decode paths
    use it, so they refuse the same requests."""
    counts = [len(row) for row in seeds]
    if len(counts) != len(prompts) or min(counts, default=1) < 1:
        raise ValueError("seeds must hold at least one seed per prompt")
    token_lists = tokenizer(prompts, **encode_kwargs)["input_ids"]
    prompt_tokens = [len(t) for t in token_lists]
    if min(prompt_tokens) < 1:
        raise ValueError("a prompt encodes to no tokens")
    if context is not None and max(prompt_tokens) + params.max_new_tokens > context:
        raise ValueError(f"prompt of {max(prompt_tokens)} tokens + max_new_tokens "
                         f"{params.max_new_tokens} exceeds the model's context of {context}")
    return counts, token_lists


def _stop_hit(tokenizer: Any, tokens: list[int], stops: tuple[str, ...], window: int) -> bool:
    tail = tokenizer.decode(tokens[-window:], skip_special_tokens=False)
    return any(s in tail for s in stops)


def advance_rows(tokenizer: Any, rows: list[int], chosen: list[int], tokens: list[list[int]],
                 finish: list[FinishReason], params: SamplingParams, eos_ids: set[int],
                 window: int) -> list[int]:
    """Append each row's chosen token; the positions (in ``rows``) of those that go on. A row
    ends on EOS or a stop sequence ("stop", the rule both decode paths share) or at
    ``max_new_tokens`` (its finish reason stays "length")."""
    going = []
    for slot, (r, tok) in enumerate(zip(rows, chosen, strict=True)):
        tokens[r].append(tok)
        if tok in eos_ids or (params.stop and _stop_hit(tokenizer, tokens[r], params.stop, window)):
            finish[r] = "stop"
        elif len(tokens[r]) < params.max_new_tokens:
            going.append(slot)
    return going


def _final_text(tokenizer: Any, tokens: list[int], eos_ids: set[int], stops: tuple[str, ...]) -> str:
    if tokens and tokens[-1] in eos_ids:
        tokens = tokens[:-1]
    text = tokenizer.decode(tokens, skip_special_tokens=True)
    cuts = [i for i in (text.find(s) for s in stops) if i >= 0]
    return text[:min(cuts)] if cuts else text


@dataclass
class SampleRows:
    """A request's samples as rows, the bookkeeping both decode paths share: the prompts'
    tokens, each row's seeded generator, its tokens so far and how it ended."""

    counts: list[int]  # samples per prompt
    token_lists: list[list[int]]  # each prompt's token ids
    starts: list[int]  # each prompt's first row
    generators: list[Any]  # row -> its own seeded torch generator
    eos_ids: set[int]
    window: int  # tokens of the decoded tail a stop sequence is looked for in
    tokens: list[list[int]]  # each row's tokens so far
    finish: list[FinishReason]  # each row's finish reason ("length" until it stops)

    @classmethod
    def of(cls, model: Any, tokenizer: Any, prompts: list[str], params: SamplingParams,
           seeds: list[list[int]], encode_kwargs: dict[str, bool], context: int | None,
           device: Any) -> SampleRows:
        """Encode and check the request (``encode_request``); a row per sample, in order."""
        import torch

        counts, token_lists = encode_request(tokenizer, prompts, params, seeds, encode_kwargs,
                                             context)
        generators = [torch.Generator(device=device).manual_seed(s) for row in seeds for s in row]
        return cls(counts, token_lists, [sum(counts[:i]) for i in range(len(prompts))],
                   generators, _eos_ids(model, tokenizer),
                   4 * max((len(s) for s in params.stop), default=0) + 2,
                   [[] for _ in generators], ["length"] * len(generators))

    def prompt_rows(self, i: int) -> list[int]:
        """The rows of prompt ``i``'s samples."""
        return list(range(self.starts[i], self.starts[i] + self.counts[i]))

    def advance(self, tokenizer: Any, rows: list[int], chosen: list[int],
                params: SamplingParams) -> list[int]:
        """``advance_rows`` on these rows: the positions (in ``rows``) of those that go on."""
        return advance_rows(tokenizer, rows, chosen, self.tokens, self.finish, params,
                            self.eos_ids, self.window)

    def samples(self, tokenizer: Any, params: SamplingParams) -> list[list[RawSample]]:
        """Each prompt's finished samples, their text cut at the stop sequence."""
        return [[RawSample(_final_text(tokenizer, self.tokens[r], self.eos_ids, params.stop),
                           len(self.token_lists[i]), len(self.tokens[r]), self.finish[r])
                 for r in self.prompt_rows(i)] for i in range(len(self.counts))]


def sample_batch_steps(model: Any, tokenizer: Any, prompts: list[str], params: SamplingParams,
                       seeds: list[list[int]], encode_kwargs: dict[str, bool],
                       guard: Guard = nullcontext, prefill_tokens: int = PREFILL_TOKENS,
                       max_rows: int | None = None) -> Steps[list[list[RawSample]]]:
    """``len(seeds[i])`` samples of prompt ``i`` (``seeds[i][j]`` seeds sample ``j``); yields
    before each forward pass (``compute.Steps``).

    At most ``max_rows`` rows decode together; when a quarter of them have finished, waiting
    rows are prefilled and join (``DecodeBatch``). ``max_rows=1`` is the plain one-at-a-time
    loop. Every forward pass runs inside ``guard()``: the embedded backend takes its model lock
    and activates this request's adapter there, so adapters can be loaded between two passes;
    each prompt is prefilled in passes of at most ``prefill_tokens`` tokens so no pass is long."""
    import torch

    req = SampleRows.of(model, tokenizer, prompts, params, seeds, encode_kwargs,
                        getattr(model.config, "max_position_embeddings", None), model.device)
    waiting = [(i, req.prompt_rows(i)) for i in range(len(prompts))]
    max_rows = max_rows or len(req.generators)

    def admit(room: int) -> Steps[DecodeBatch]:
        groups = []
        while waiting and room > 0:
            i, rows = waiting[0]
            groups.append((i, rows[:room]))
            waiting[0] = (i, rows[room:])
            room -= len(groups[-1][1])
            if not waiting[0][1]:
                waiting.pop(0)
        return (yield from DecodeBatch.prefill(model, [req.token_lists[i] for i, _ in groups],
                                               [len(rows) for _, rows in groups],
                                               [r for _, rows in groups for r in rows], guard,
                                               prefill_tokens))

    batch = yield from admit(max_rows)
    joinable = batch.can_absorb()
    while batch.rows:
        chosen = choose_tokens(batch.logits, params, [req.generators[r] for r in batch.rows],
                         [req.tokens[r] for r in batch.rows])
        keep = req.advance(tokenizer, batch.rows, chosen.tolist(), params)
        batch.keep(keep)
        if keep:
            yield from batch.step(model, chosen[torch.tensor(keep, device=chosen.device)], guard)
        free = max_rows - len(batch.rows)
        if waiting and (not batch.rows or (joinable and free >= max(1, max_rows // 4))):
            joining = yield from admit(free)
            if batch.rows:
                batch.absorb(joining)
            else:
                batch = joining
    return req.samples(tokenizer, params)


def _eos_ids(model: Any, tokenizer: Any) -> set[int]:
    ids: set[int] = set()
    for source in (getattr(model, "generation_config", None), model.config):
        value = getattr(source, "eos_token_id", None)
        if value is not None:
            ids.update(value if isinstance(value, (list, tuple)) else [value])
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    return ids


sample_batch = blocking(sample_batch_steps)
