"""HTTP to one vLLM replica: bounded retries that respect what is safe to repeat, vLLM's error
bodies turned into this project's errors, and its whole completions parsed (streamed ones:
``vllm_stream``).

What is retried (``RetryPolicy.attempts`` tries, exponential backoff with jitter):
- a connection that could not be made (refused, connect timeout): nothing reached the server;
- answers that say the request was not run: 429 and 503, on every call; 500, 502 and 504 too on
  calls that are safe to repeat (``GET``, adapter load/unload, which check for a landed repeat).
A completion is not idempotent (it takes the server's time, and a sampled answer differs): after
a read timeout or a connection lost once the request was sent it is *not* retried, and it fails
at once as ``BackendUnavailable``.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass
from typing import Any

from service.generation.types import (
    AdapterNotFound,
    BackendUnavailable,
    Completion,
    FinishReason,
    GenerationError,
    RequestRejected,
)

_RETRY_ALWAYS = {429, 503}
_RETRY_IDEMPOTENT = {500, 502, 504}


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded retries: ``attempts`` tries, sleeping ``backoff_s * 2**k`` (capped, jittered)."""

    attempts: int = 4
    backoff_s: float = 0.5
    max_backoff_s: float = 8.0
    timeout_s: float = 300.0  # one completion call may legitimately take minutes
    connect_timeout_s: float = 5.0
    recheck_s: float = 10.0  # how long a replica found down is left alone before a new try

    def delay(self, attempt: int) -> float:
        return min(self.max_backoff_s, self.backoff_s * 2 ** attempt) * (0.5 + random.random() / 2)


class VLLMRequestError(GenerationError):
    """vLLM refused the request with a 4xx (or a 500 on a call that must not be retried)."""

    def __init__(self, status: int, message: str, err_type: str = "") -> None:
        super().__init__(f"vLLM answered {status} {err_type}: {message}")
        self.status, self.message, self.err_type = status, message, err_type


class Unreachable(BackendUnavailable):
    """The replica never took the request (down, refusing, or saying so): another may."""


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


def refusal(exc: VLLMRequestError, model: str) -> Exception:
    """What a refused completion means here: an adapter gone, a bad request (4xx for our
    client), or a failure of the server (5xx: it is down for this request)."""
    if exc.status == 404:  # the adapter vanished server-side (e.g. vLLM restarted)
        return AdapterNotFound(f"vLLM does not serve {model!r}: {exc.message}")
    if exc.status < 500:
        return RequestRejected(f"vLLM refused the request ({exc.status}): {exc.message}")
    return GenerationError(f"vLLM failed the request ({exc.status}): {exc.message}")


class Replica:
    """One vLLM server: its client, and whether it was found down (and until when)."""

    def __init__(self, url: str, client: Any, retry: RetryPolicy) -> None:
        self.url = url.rstrip("/")
        self.client = client
        self.retry = retry
        self.down_since: float | None = None  # monotonic time it was found down; None: up

    @property
    def up(self) -> bool:
        return self.down_since is None

    def due_for_recheck(self) -> bool:
        return self.down_since is not None and \
            time.monotonic() - self.down_since >= self.retry.recheck_s

    def mark_down(self) -> None:
        """Found unreachable (again): left alone for ``recheck_s`` from now."""
        self.down_since = time.monotonic()

    async def call(self, method: str, path: str, body: dict[str, Any] | None = None, *,
                   idempotent: bool = True, retry_500: bool = True) -> Any:
        """The 2xx response; ``VLLMRequestError`` for a refusal; ``Unreachable`` when the
        request never ran; ``BackendUnavailable`` when it may have (not retried)."""
        import httpx

        retry_status = _RETRY_ALWAYS | (_RETRY_IDEMPOTENT if idempotent else set())
        if not retry_500:
            retry_status = retry_status - {500}
        last = ""
        for attempt in range(self.retry.attempts):
            if attempt:
                await asyncio.sleep(self.retry.delay(attempt - 1))
            try:
                response = await self.client.request(method, path, json=body)
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
                last = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                continue
            except (httpx.TimeoutException, httpx.TransportError) as exc:
                if idempotent:
                    last = f"timed out ({type(exc).__name__})" \
                        if isinstance(exc, httpx.TimeoutException) else f"{type(exc).__name__}"
                    continue
                raise BackendUnavailable(
                    f"vLLM at {self.url}: {method} {path} timed out or lost its connection "
                    f"after it was sent ({type(exc).__name__}); not retried (a completion is "
                    "not idempotent)") from exc
            if response.status_code in retry_status:
                last = f"HTTP {response.status_code}: {error_message(response)[0]}"
                continue
            if response.status_code >= 400:
                message, err_type = error_message(response)
                raise VLLMRequestError(response.status_code, message, err_type)
            return response
        raise Unreachable(f"vLLM at {self.url} unavailable: {method} {path} failed "
                          f"{self.retry.attempts} times; last: {last}")


def parse_completions(data: dict[str, Any], prompts: int, n: int,
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
