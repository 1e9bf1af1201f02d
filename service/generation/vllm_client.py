"""The vLLM backend: an async HTTP client for a vLLM OpenAI-compatible server (pinned version).

Completions pick an adapter by model name. Hot reload is the pattern vLLM supports reliably: each
new adapter is loaded under a new versioned name (``policy-v7``) with ``POST /v1/load_lora_adapter``,
checked in ``GET /v1/models``, the alias is moved to it, and the previous version is unloaded with
``POST /v1/unload_lora_adapter`` once its requests have finished (``base.Generator``). Same-name
in-place reloads are never used. The server must run with ``--enable-lora --max-lora-rank R`` and
``VLLM_ALLOW_RUNTIME_LORA_UPDATING=True``. Connection failures, timeouts, 429 and 5xx are retried
with exponential backoff, then raised as ``BackendUnavailable`` (the API's 503).
"""

from __future__ import annotations

import asyncio
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from service.generation.adapters import check_lora_dir
from service.generation.base import Generator
from service.generation.types import (
    AdapterError,
    AdapterNotFound,
    BackendUnavailable,
    Completion,
    FinishReason,
    GenerationError,
    SamplingParams,
)

VLLM_VERSION = "0.11.0"  # the one version this client and tests/…/vllm_double.py follow
VLLM_IMAGE = f"vllm/vllm-openai:v{VLLM_VERSION}"
_RETRY_STATUS = {429, 500, 502, 503, 504}


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded retries: ``attempts`` tries, sleeping ``backoff_s * 2**k`` (capped, jittered)."""

    attempts: int = 4
    backoff_s: float = 0.5
    max_backoff_s: float = 8.0
    timeout_s: float = 300.0  # one completion call may legitimately take minutes
    connect_timeout_s: float = 5.0

    def delay(self, attempt: int) -> float:
        return min(self.max_backoff_s, self.backoff_s * 2 ** attempt) * (0.5 + random.random() / 2)


class VLLMRequestError(GenerationError):
    """vLLM refused the request (4xx other than 429): retrying would not help."""

    def __init__(self, status: int, message: str, err_type: str = "") -> None:
        super().__init__(f"vLLM answered {status} {err_type}: {message}")
        self.status, self.message, self.err_type = status, message, err_type


def error_message(response: Any) -> tuple[str, str]:
    """(message, type) from vLLM's error body: nested ``{"error": {...}}`` since v0.10.1, flat
    before; FastAPI's ``{"detail": ...}`` for routes that do not exist."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:500], ""
    if isinstance(body, dict):
        nested = body.get("error")
        inner: dict[str, Any] = nested if isinstance(nested, dict) else body
        if "message" in inner:
            return str(inner["message"]), str(inner.get("type", ""))
        if "detail" in body:
            return str(body["detail"]), ""
    return str(body)[:500], ""


class VLLMGenerator(Generator):
    """Generates through a vLLM server; adapters are vLLM LoRA modules (see module docstring)."""

    def __init__(self, base_url: str, model: str, *, retry: RetryPolicy | None = None,
                 api_key: str | None = None, client: Any = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        import httpx

        self.base_url = base_url.rstrip("/")
        self.model = model
        self.retry = retry or RetryPolicy()
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        timeout = httpx.Timeout(self.retry.timeout_s, connect=self.retry.connect_timeout_s)
        self._client = client or httpx.AsyncClient(base_url=self.base_url, headers=headers,
                                                   timeout=timeout)

    async def close(self) -> None:
        await super().close()
        await self._client.aclose()

    # -- HTTP with bounded retries -------------------------------------------------------------
    async def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """The response of a 2xx answer; VLLMRequestError for 4xx; BackendUnavailable after the
        retries for connection errors, timeouts, 429 and 5xx."""
        import httpx

        last = ""
        for attempt in range(self.retry.attempts):
            if attempt:
                await asyncio.sleep(self.retry.delay(attempt - 1))
            try:
                response = await self._client.request(method, path, json=body)
            except httpx.TimeoutException as exc:
                last = f"timed out ({type(exc).__name__})"
                continue
            except httpx.TransportError as exc:
                last = f"{type(exc).__name__}: {exc}"
                continue
            if response.status_code in _RETRY_STATUS:
                last = f"HTTP {response.status_code}: {error_message(response)[0]}"
                continue
            if response.status_code >= 400:
                message, err_type = error_message(response)
                raise VLLMRequestError(response.status_code, message, err_type)
            return response
        raise BackendUnavailable(f"vLLM at {self.base_url} unavailable: {method} {path} failed "
                                 f"{self.retry.attempts} times; last: {last}")

    async def served_models(self) -> dict[str, dict[str, Any]]:
        """``GET /v1/models`` as ``{id: card}``: the base model and every loaded adapter."""
        response = await self._call("GET", "/v1/models")
        return {card["id"]: card for card in response.json().get("data", [])}

    async def start(self) -> None:
        """Check the base model is served, and adopt versions of the alias a previous run left
        loaded (the newest serves), so version names never collide after a restart."""
        served = await self.served_models()
        if self.model not in served:
            raise GenerationError(f"vLLM at {self.base_url} does not serve {self.model!r}; it "
                                  f"serves {sorted(served)}: set the model name to match")
        versions = sorted((int(m.group(1)), name) for name in served
                          if (m := re.fullmatch(rf"{re.escape(self.alias)}-v(\d+)", name)))
        for _, name in versions:
            self._adopt(name, str(served[name].get("root") or ""))
        if versions:
            await self.activate(versions[-1][1])

    # -- backend hooks -------------------------------------------------------------------------
    def _check_adapter(self, path: str) -> None:
        if Path(path).exists():  # a path only the server sees is left to vLLM to check
            check_lora_dir(path, self.max_lora_rank)

    async def _generate(self, prompts: list[str], params: SamplingParams,
                        adapter: str | None) -> list[list[Completion]]:
        body: dict[str, Any] = {
            "model": adapter or self.model, "prompt": prompts, "n": params.n,
            "temperature": params.temperature, "top_p": params.top_p,
            "max_tokens": params.max_new_tokens, "stop": list(params.stop),
            "return_token_ids": True,  # per-choice token counts (usage only has totals)
        }
        if params.seed is not None:
            body["seed"] = params.seed
        try:
            response = await self._call("POST", "/v1/completions", body)
        except VLLMRequestError as exc:
            if exc.status == 404:  # the adapter vanished server-side (e.g. vLLM restarted)
                raise AdapterNotFound(f"vLLM does not serve {body['model']!r}: {exc.message}") from exc
            raise
        return self._parse_completions(response.json(), len(prompts), params.n, adapter)

    @staticmethod
    def _parse_completions(data: dict[str, Any], prompts: int, n: int,
                           adapter: str | None) -> list[list[Completion]]:
        choices = sorted(data.get("choices", []), key=lambda c: c["index"])
        if len(choices) != prompts * n:
            raise GenerationError(f"vLLM returned {len(choices)} choices for {prompts} prompts "
                                  f"x n={n}")
        usage = data.get("usage") or {}
        out: list[list[Completion]] = [[] for _ in range(prompts)]
        for choice in choices:
            i = choice["index"] // n  # vLLM orders choices prompt by prompt, n each
            prompt_ids, token_ids = choice.get("prompt_token_ids"), choice.get("token_ids")
            prompt_tokens = (len(prompt_ids) if prompt_ids is not None
                             else usage.get("prompt_tokens", 0) // max(prompts, 1))
            completion_tokens = (len(token_ids) if token_ids is not None
                                 else usage.get("completion_tokens", 0) // max(len(choices), 1))
            reason: FinishReason = ("length" if choice.get("finish_reason") == "length"
                                    else "stop")
            out[i].append(Completion(choice.get("text", ""), prompt_tokens, completion_tokens,
                                     reason, adapter))
        return out

    async def _load(self, name: str, path: str) -> None:
        try:
            await self._call("POST", "/v1/load_lora_adapter",
                             {"lora_name": name, "lora_path": path})
        except VLLMRequestError as exc:
            if exc.status == 404 and not exc.err_type:
                raise AdapterError("vLLM has no /v1/load_lora_adapter: start it with "
                                   "VLLM_ALLOW_RUNTIME_LORA_UPDATING=True and --enable-lora") from exc
            if "already been loaded" not in exc.message:
                raise AdapterError(f"vLLM refused adapter {name!r} ({path}): {exc.message}") from exc
        card = (await self.served_models()).get(name)
        if card is not None and card.get("root") not in (None, path):  # a stranger's adapter
            raise AdapterError(f"vLLM already serves {name!r} from {card.get('root')}, not {path}")
        if card is None:
            raise GenerationError(f"vLLM accepted adapter {name!r} but /v1/models does not list it")
        if card.get("parent") not in (None, self.model):
            raise GenerationError(f"vLLM serves {name!r} on {card.get('parent')!r}, not {self.model!r}")

    async def _unload(self, name: str) -> None:
        try:
            await self._call("POST", "/v1/unload_lora_adapter", {"lora_name": name})
        except VLLMRequestError as exc:
            if exc.status != 404:  # 404: already gone (a retried unload that had landed)
                raise AdapterError(f"vLLM refused to unload {name!r}: {exc.message}") from exc
