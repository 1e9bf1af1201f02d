"""vLLM's streamed completions: the stream opened on a replica, its server-sent events read, and
the chunks tallied into the completions ``generate`` would have returned.

Choice ``i`` of a stream is sample ``i % n`` of prompt ``i // n``, as in a whole answer.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from service.generation.types import BackendUnavailable, Completion, FinishReason, GenerationError
from service.generation.vllm_http import (
    Replica,
    Unreachable,
    VLLMRequestError,
    error_message,
    refusal,
)


class Opened:
    """An accepted streaming response as an async context manager that closes it."""

    def __init__(self, response: Any) -> None:
        self.response = response

    async def __aenter__(self) -> Any:
        return self.response

    async def __aexit__(self, *exc: object) -> None:
        await self.response.aclose()


async def open_stream(replica: Replica, body: dict[str, Any]) -> Opened:
    """The stream's response once vLLM accepted it; its refusal raised here, before any text,
    so the API can still answer with a status code."""
    import httpx

    request = replica.client.build_request("POST", "/v1/completions", json=body)
    try:
        response = await replica.client.send(request, stream=True)
    except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
        raise Unreachable(f"vLLM at {replica.url} unavailable: {exc}") from exc
    except httpx.TransportError as exc:
        raise BackendUnavailable(f"vLLM at {replica.url}: the stream failed ({exc})") \
            from exc
    if response.status_code >= 400:
        await response.aread()
        await response.aclose()
        message, err_type = error_message(response)
        if response.status_code in (429, 503):
            raise Unreachable(f"vLLM at {replica.url}: HTTP {response.status_code}: "
                              f"{message}")
        raise refusal(VLLMRequestError(response.status_code, message, err_type), body["model"])
    return Opened(response)


async def sse_events(response: Any) -> AsyncIterator[dict[str, Any]]:
    """The JSON objects of a server-sent event stream, up to ``data: [DONE]``."""

    async for line in response.aiter_lines():
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            return
        event = json.loads(data)
        if "error" in event:
            message, _ = error_message(_Body(event))
            raise GenerationError(f"vLLM's stream failed: {message}")
        yield event


class _Body:
    def __init__(self, body: dict[str, Any]) -> None:
        self._body = body

    def json(self) -> dict[str, Any]:
        return self._body


class StreamTally:
    """Each choice's text, token counts and finish reason as its chunks arrive, and the
    stream's usage (its last report), for the completions at the end."""

    def __init__(self) -> None:
        self.texts: dict[int, list[str]] = {}
        self.done: dict[int, dict[str, Any]] = {}
        self.usage: dict[str, Any] = {}

    def add(self, choice: dict[str, Any]) -> str | None:
        """Count one chunk of a choice; its text, when it carries any."""
        index = int(choice["index"])
        acc = self.done.setdefault(index, {"tokens": 0, "prompt": None})
        if choice.get("prompt_token_ids") is not None:
            acc["prompt"] = len(choice["prompt_token_ids"])
        acc["tokens"] += len(choice.get("token_ids") or ()) or (1 if choice.get("text") else 0)
        if choice.get("finish_reason"):
            acc["finish"] = choice["finish_reason"]
        if not choice.get("text"):
            return None
        self.texts.setdefault(index, []).append(choice["text"])
        return str(choice["text"])

    def completions(self, prompts: int, n: int, adapter: str | None) -> list[list[Completion]]:
        """The finished completions, ``n`` per prompt, as ``generate`` returns them."""
        out: list[list[Completion]] = [[] for _ in range(prompts)]
        for index in range(prompts * n):
            acc = self.done.get(index, {"tokens": 0, "prompt": None})
            prompt_tokens = acc["prompt"] if acc["prompt"] is not None else \
                self.usage.get("prompt_tokens", 0) // max(prompts, 1)
            reason: FinishReason = "length" if acc.get("finish") == "length" else "stop"
            out[index // n].append(Completion("".join(self.texts.get(index, [])), prompt_tokens,
                                              acc["tokens"], reason, adapter))
        return out
