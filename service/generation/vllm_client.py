"""The vLLM backend: an async HTTP client for one or several vLLM OpenAI-compatible servers of the
pinned version (``VLLM_VERSION``).

Completions pick an adapter by model name. Hot reload is the pattern vLLM supports reliably: each
new adapter is loaded under a new versioned name (``policy-v7``) with ``POST /v1/load_lora_adapter``,
checked in ``GET /v1/models``, the alias is moved to it, and the previous version is unloaded with
``POST /v1/unload_lora_adapter`` once its requests have finished (``base.Generator``). Same-name
in-place reloads are never used. The server must run with ``--enable-lora --max-lora-rank R`` and
``VLLM_ALLOW_RUNTIME_LORA_UPDATING=True``.

Several replicas (``LETI_VLLM_URLS``): every adapter is loaded on and unloaded from each replica;
completions go round-robin to the replicas that are up. A replica that cannot be reached is
marked down and skipped; after ``RetryPolicy.recheck_s`` it is tried again, first brought back in
line (the adapters it lacks loaded, versions of the alias it should no longer serve unloaded).
What is retried, and what is not, is in ``vllm_http``.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from service.generation.adapters import check_lora_dir
from service.generation.base import Generator
from service.generation.types import (
    AdapterError,
    BackendUnavailable,
    Completion,
    GenerationError,
    SamplingParams,
    StreamEvent,
)
from service.generation.vllm_http import (
    Replica,
    RetryPolicy,
    Unreachable,
    VLLMRequestError,
    error_message,
    parse_completions,
    refusal,
)
from service.generation.vllm_stream import StreamTally, open_stream, sse_events

# The one version this client, docker-compose.yml and the test double
# (tests/generation/vllm_double.py) follow. Why this one (docs/GENERATION.md "Pinned vLLM"):
# the security fixes released since v0.11.0, and its LoRA behaviour: a failed runtime load
# answers 500 InternalServerError (400 before), a missing adapter directory 404, and "already
# been loaded" stays a 400 unless load_inplace is asked.
VLLM_VERSION = "0.34.0"
VLLM_IMAGE = f"vllm/vllm-openai:v{VLLM_VERSION}"
T = TypeVar("T")

__all__ = ["VLLM_IMAGE", "VLLM_VERSION", "RetryPolicy", "VLLMGenerator", "VLLMRequestError",
           "error_message"]


class VLLMGenerator(Generator):
    """Generates through vLLM servers; adapters are vLLM LoRA modules (see module docstring)."""

    streams = True

    def __init__(self, base_url: str | Sequence[str], model: str, *,
                 retry: RetryPolicy | None = None, api_key: str | None = None, client: Any = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        import httpx

        urls = [base_url] if isinstance(base_url, str) else list(base_url)
        if not urls:
            raise ValueError("the vllm backend needs at least one server URL")
        self.model_name: str = model  # the served base model's name
        self.retry = retry or RetryPolicy()
        self.base_url = urls[0].rstrip("/")
        # Prompts built with a chat template already hold their special tokens (the trainer
        # encodes them with add_special_tokens=False too): see use_prompt_tokenizer.
        self.add_special_tokens = True
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        timeout = httpx.Timeout(self.retry.timeout_s, connect=self.retry.connect_timeout_s)
        self.replicas = [Replica(url, client or httpx.AsyncClient(
            base_url=url.rstrip("/"), headers=headers, timeout=timeout), self.retry)
            for url in urls]
        self._turn = 0

    def use_prompt_tokenizer(self, tokenizer: Any) -> None:
        """Encode prompts as training does: no special tokens added to chat-template text."""
        from trainer.prompts import encode_kwargs

        self.add_special_tokens = encode_kwargs(tokenizer)["add_special_tokens"]

    async def close(self) -> None:
        await super().close()
        for replica in self.replicas:
            await replica.client.aclose()

    # -- replicas ------------------------------------------------------------------------------
    def _rotation(self) -> list[Replica]:
        """Replicas to try, in order: those down long enough to be tried again (so they
        rejoin), then the up ones round-robin; when none is up, every replica (a lone server
        is always tried)."""
        up = [r for r in self.replicas if r.up]
        self._turn += 1
        if up:
            start = self._turn % len(up)
            up = up[start:] + up[:start]
        down = sorted((r for r in self.replicas if not r.up), key=lambda r: r.down_since or 0)
        due = [r for r in down if r.due_for_recheck()]
        return due + up if up else down

    async def _on_a_replica(self, work: Callable[[Replica], Awaitable[T]]) -> T:
        """``work`` on one replica, failing over to the next while replicas are unreachable."""
        last: Unreachable | None = None
        for replica in self._rotation():
            try:
                if not replica.up:
                    await self._bring_in_line(replica)
                result = await work(replica)
            except Unreachable as exc:
                replica.mark_down()
                last = exc
                continue
            replica.down_since = None
            return result
        if last is not None and len(self.replicas) == 1:
            raise last
        raise BackendUnavailable(f"no vLLM replica of {len(self.replicas)} answered; last: "
                                 f"{last}")

    async def _bring_in_line(self, replica: Replica) -> None:
        """Make a replica that was down serve exactly the adapters the others serve."""
        served = await self._models_on(replica)
        with self._lock:
            wanted = {name: entry.path for name, entry in self._entries.items()}
        for name, path in wanted.items():
            if name not in served:
                await self._load_on(replica, name, path)
        ours = re.compile(rf"{re.escape(self.alias)}-v\d+")
        for name in served:
            if ours.fullmatch(name) and name not in wanted:
                await self._unload_on(replica, name)

    async def _on_every_replica(self, work: Callable[[Replica], Awaitable[None]]) -> None:
        """``work`` on each replica that is up; one found unreachable is marked down (it is
        brought in line when it rejoins). Raises when no replica could be reached."""
        reached = 0
        for replica in self.replicas:
            if not replica.up and not replica.due_for_recheck() and \
                    any(r.up for r in self.replicas):
                continue
            try:
                if not replica.up:
                    await self._bring_in_line(replica)
                    replica.down_since = None
                await work(replica)
            except Unreachable:
                replica.mark_down()
                continue
            reached += 1
        if not reached:
            raise BackendUnavailable(f"no vLLM replica of {len(self.replicas)} could be "
                                     "reached")

    # -- models --------------------------------------------------------------------------------
    async def _models_on(self, replica: Replica) -> dict[str, dict[str, Any]]:
        response = await replica.call("GET", "/v1/models")
        return {card["id"]: card for card in response.json().get("data", [])}

    async def served_models(self) -> dict[str, dict[str, Any]]:
        """``GET /v1/models`` as ``{id: card}``: the base model and every loaded adapter."""
        return await self._on_a_replica(self._models_on)

    async def check(self) -> None:
        """A replica answers ``GET /v1/models`` (readiness asks the server itself)."""
        await self.served_models()

    async def start(self) -> None:
        """Check the base model is served, and adopt versions of the alias a previous run left
        loaded (the newest serves), so version names never collide after a restart."""
        served = await self.served_models()
        if self.model_name not in served:
            raise GenerationError(f"vLLM at {self.base_url} does not serve "
                                  f"{self.model_name!r}; it serves {sorted(served)}: set the "
                                  "model name to match")
        versions = sorted((int(m.group(1)), name) for name in served
                          if (m := re.fullmatch(rf"{re.escape(self.alias)}-v(\d+)", name)))
        for _, name in versions:
            self._adopt(name, str(served[name].get("root") or ""))
        if versions:
            await self.activate(versions[-1][1])
        for replica in self.replicas if len(self.replicas) > 1 else ():
            try:  # every replica must serve the same adapters
                await self._bring_in_line(replica)
            except Unreachable:
                replica.mark_down()

    # -- backend hooks -------------------------------------------------------------------------
    def _check_adapter(self, path: str) -> None:
        if Path(path).exists():  # a path only the server sees is left to vLLM to check
            check_lora_dir(path, self.max_lora_rank)

    def _body(self, prompts: list[str], params: SamplingParams, adapter: str | None,
              stream: bool) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": adapter or self.model_name, "prompt": prompts, "n": params.n,
            "temperature": params.temperature, "top_p": params.top_p,
            "repetition_penalty": params.repetition_penalty,
            "max_tokens": params.max_new_tokens, "stop": list(params.stop),
            "add_special_tokens": self.add_special_tokens,
            "return_token_ids": True,  # per-choice token counts (usage only has totals)
        }
        if params.seed is not None:
            body["seed"] = params.seed
        if stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        return body

    async def _generate(self, prompts: list[str], params: SamplingParams,
                        adapter: str | None) -> list[list[Completion]]:
        body = self._body(prompts, params, adapter, stream=False)

        async def complete(replica: Replica) -> Any:
            return await replica.call("POST", "/v1/completions", body, idempotent=False)
        try:
            response = await self._on_a_replica(complete)
        except VLLMRequestError as exc:
            raise refusal(exc, body["model"]) from exc
        return parse_completions(response.json(), len(prompts), params.n, adapter)

    async def stream(self, prompts: Sequence[str], params: SamplingParams,
                     adapter: str | None = None) -> AsyncIterator[StreamEvent]:
        """vLLM's stream passed through: ``(choice index, text)`` as each chunk arrives, then
        the finished completions (as ``generate`` returns them). Choice ``i`` is sample
        ``i % n`` of prompt ``i // n``."""
        with self._pinned(adapter) as name:
            body = self._body(list(prompts), params, name, stream=True)
            context = await self._on_a_replica(lambda r: open_stream(r, body))
            tally = StreamTally()
            async with context as response:
                async for event in sse_events(response):
                    for choice in event.get("choices", []):
                        if (text := tally.add(choice)) is not None:
                            yield int(choice["index"]), text
                    tally.usage = event.get("usage") or tally.usage
            yield tally.completions(len(prompts), params.n, name)

    async def _load(self, name: str, path: str) -> None:
        await self._on_every_replica(lambda replica: self._load_on(replica, name, path))

    async def _load_on(self, replica: Replica, name: str, path: str) -> None:
        try:  # a 500 is vLLM's answer to an adapter it failed to load: no retry, an AdapterError
            await replica.call("POST", "/v1/load_lora_adapter",
                               {"lora_name": name, "lora_path": path}, retry_500=False)
        except VLLMRequestError as exc:
            if exc.status == 404 and not exc.err_type:
                raise AdapterError("vLLM has no /v1/load_lora_adapter: start it with "
                                   "VLLM_ALLOW_RUNTIME_LORA_UPDATING=True and --enable-lora") from exc
            if "already been loaded" not in exc.message:
                raise AdapterError(f"vLLM refused adapter {name!r} ({path}): {exc.message}") from exc
        card = (await self._models_on(replica)).get(name)
        if card is not None and card.get("root") not in (None, path):  # a stranger's adapter
            raise AdapterError(f"vLLM already serves {name!r} from {card.get('root')}, not {path}")
        if card is None:
            raise GenerationError(f"vLLM accepted adapter {name!r} but /v1/models does not list it")
        if card.get("parent") not in (None, self.model_name):
            raise GenerationError(f"vLLM serves {name!r} on {card.get('parent')!r}, "
                                  f"not {self.model_name!r}")

    async def _unload(self, name: str) -> None:
        await self._on_every_replica(lambda replica: self._unload_on(replica, name))

    async def _unload_on(self, replica: Replica, name: str) -> None:
        try:
            await replica.call("POST", "/v1/unload_lora_adapter", {"lora_name": name})
        except VLLMRequestError as exc:
            if exc.status != 404:  # 404: already gone (a retried unload that had landed)
                raise AdapterError(f"vLLM refused to unload {name!r}: {exc.message}") from exc
