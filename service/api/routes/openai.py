"""OpenAI-compatible serving: ``GET /v1/models``, ``POST /v1/chat/completions``,
``POST /v1/completions`` (docs/API.md "OpenAI-compatible serving").

Thin: the wire format (``protocols.openai``) is translated into ``core.serving.ServeInput`` and
the result rendered back, as JSON or as server-sent events ending in ``data: [DONE]``. Every
error on these routes is OpenAI's error object with the status OpenAI would use.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request, Response, Security
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from fastapi.routing import APIRoute
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from service.api.deps import GenerationDep, ServicesDep
from service.api.protocols.openai import (
    COMPLETION_RESPONSES,
    ChatRequest,
    CompletionRequest,
    error_body,
    error_responses,
    model_list,
    usage,
)
from service.core.errors import Unavailable
from service.core.security import API_KEY_HEADER, key_matches
from service.core.serving import Message, ModelNotFound, Served, ServeInput, Serving, TextDelta
from service.generation.types import BackendUnavailable

log = logging.getLogger(__name__)


def openai_error(request: Request, exc: Exception) -> JSONResponse:
    """Any exception as OpenAI's error body; the status comes from the app's own mapping
    (service/api/errors.py), except that invalid input is a 400, as OpenAI answers."""
    if isinstance(exc, RequestValidationError):
        problems = exc.errors()
        first = problems[0] if problems else {}
        loc = []
        for part in first.get("loc", ())[1:]:  # after "body"; until a union member's tag
            if not re.fullmatch(r"[A-Za-z_]\w*|\d+", str(part)):
                break
            loc.append(str(part))
        param = ".".join(loc) or None
        message = str(first.get("msg", "invalid request"))
        if first.get("type") == "json_invalid":
            param, message = None, f"the body is not valid JSON: {first.get('ctx', {}).get('error', '')}"
        return JSONResponse(error_body(f"{param}: {message}" if param else message, 400, param),
                            status_code=400)
    if isinstance(exc, HTTPException):
        status, message, headers = exc.status_code, str(exc.detail), exc.headers
    else:
        answer = _app_handler(request, exc)(request, exc)
        status, headers = answer.status_code, None
        message = str(json.loads(bytes(answer.body)).get("detail", ""))
    if status in (413, 422):
        status = 400
    code = ("model_not_found" if isinstance(exc, ModelNotFound)
            else "invalid_api_key" if status == 401 else None)
    param = "model" if code == "model_not_found" else None
    return JSONResponse(error_body(message, status, param, code), status_code=status,
                        headers=headers)


def _app_handler(request: Request, exc: Exception) -> Callable[[Request, Exception], Any]:
    handlers = request.app.exception_handlers
    for cls in type(exc).__mro__:
        if cls in handlers:
            return handlers[cls]
    return handlers[Exception]


class OpenAIRoute(APIRoute):
    """A route whose every error (validation, auth, domain, backend) is OpenAI-shaped."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except Exception as exc:  # noqa: BLE001 - rendered, and 5xx logged by the handler
                return openai_error(request, exc)
        return route


_bearer = HTTPBearer(auto_error=False, description="the API key, as OpenAI clients send it")
_key_header = APIKeyHeader(name=API_KEY_HEADER, auto_error=False,
                           description="the same key, as the rest of the API takes it")


def require_key(services: ServicesDep,
                bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)] = None,
                x_api_key: Annotated[str | None, Security(_key_header)] = None) -> None:
    """``Authorization: Bearer <key>`` (what OpenAI clients send) or ``X-API-Key``: one key."""
    presented: list[str | None] = [k for k in (bearer.credentials if bearer else None,
                                                x_api_key) if k is not None] or [None]
    if not any(key_matches(services.settings.api_key, key) for key in presented):
        raise HTTPException(401, "missing or wrong API key: send it as 'Authorization: Bearer "
                                 f"<key>' or in the {API_KEY_HEADER} header",
                            headers={"WWW-Authenticate": "Bearer"})


router = APIRouter(prefix="/v1", tags=["openai"], route_class=OpenAIRoute)
Key = Depends(require_key)


def get_serving(generation: GenerationDep) -> Serving:
    return Serving(generation)


ServingDep = Annotated[Serving, Depends(get_serving)]


@router.get("/models", responses=error_responses(503))
async def models(serving: ServingDep) -> dict[str, Any]:
    """``policy`` (the serving adapter, whichever it is now), ``base``, each loaded version."""
    return model_list(serving.model_names())


@router.get("/models/{model}", responses=error_responses(404, 503))
async def model(model: str, serving: ServingDep) -> dict[str, Any]:
    """One model's card (the official clients' ``models.retrieve``)."""
    serving.check_model(model)
    return model_list([model])["data"][0]


def _input(body: ChatRequest | CompletionRequest) -> ServeInput:
    top_p, temperature = body.top_p, body.temperature
    if top_p == 0:  # nucleus of one token: the most likely, i.e. greedy
        top_p, temperature = 1.0, 0.0
    if isinstance(body, ChatRequest):
        what: dict[str, Any] = {"messages": tuple(Message(m.role, m.text) for m in body.messages),
                                "max_tokens": body.token_limit}
    else:
        what = {"prompts": body.prompts, "max_tokens": body.max_tokens}
    ext = body.leti
    return ServeInput(
        model=body.model, n=body.n, temperature=temperature, top_p=top_p, stop=body.stops,
        seed=body.seed, tests=tuple(ext.tests) if ext else (), setup=ext.setup if ext else "",
        condition_on_good=ext.condition_on_good if ext else None, **what)


@router.post("/chat/completions", dependencies=[Key], responses=COMPLETION_RESPONSES)
async def chat_completions(body: ChatRequest, serving: ServingDep) -> Response:
    """A chat completion (or its stream); each choice is a stored sample (docs/API.md)."""
    return await _serve(body, serving, chat=True)


@router.post("/completions", dependencies=[Key], responses=COMPLETION_RESPONSES)
async def completions(body: CompletionRequest, serving: ServingDep) -> Response:
    """A text completion of each prompt (or its stream); each choice is a stored sample."""
    return await _serve(body, serving, chat=False)


async def _serve(body: ChatRequest | CompletionRequest, serving: Serving, *,
                 chat: bool) -> Response:
    what = _input(body)
    if not body.stream:
        served = await serving.complete(what)
        return JSONResponse(_whole(served, chat))
    started = await serving.stream(what)
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    frames = _frames(started.ids[0], started.model, started.events, chat, include_usage,
                     len(started.ids))
    return StreamingResponse(frames, media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache"})


def _extension(choice: Any) -> dict[str, Any]:
    result = choice.result
    return {"sample_id": choice.sample_id, "result": None if result is None else {
        "status": result.outcome.status.value, "passed": result.outcome.passed,
        "feedback": result.feedback, "tests_passed": result.outcome.tests_passed,
        "tests_total": result.outcome.tests_total, "execution_id": result.execution_id}}


def _whole(served: Served, chat: bool) -> dict[str, Any]:
    choices = []
    for c in served.choices:
        item: dict[str, Any] = {"index": c.index, "finish_reason": c.finish_reason,
                                "logprobs": None, "leti": _extension(c)}
        if chat:
            item["message"] = {"role": "assistant", "content": c.text}
        else:
            item["text"] = c.text
        choices.append(item)
    return {"id": served.choices[0].sample_id if served.choices else "",
            "object": "chat.completion" if chat else "text_completion",
            "created": int(time.time()), "model": served.model, "choices": choices,
            "usage": usage(served.prompt_tokens, served.completion_tokens),
            "system_fingerprint": None}


async def _frames(completion_id: str, model: str, events: AsyncIterator[TextDelta | Served],
                  chat: bool, include_usage: bool, count: int) -> AsyncIterator[bytes]:
    created = int(time.time())
    kind = "chat.completion.chunk" if chat else "text_completion"

    def frame(choices: list[dict[str, Any]], **extra: Any) -> bytes:
        chunk = {"id": completion_id, "object": kind, "created": created, "model": model,
                 "choices": choices, **extra}
        if include_usage:
            chunk.setdefault("usage", None)
        return f"data: {json.dumps(chunk)}\n\n".encode()

    def piece(index: int, text: str | None, finish: str | None = None,
              **extra: Any) -> dict[str, Any]:
        if chat:
            delta = {} if text is None else {"content": text}
            return {"index": index, "delta": delta, "finish_reason": finish, "logprobs": None,
                    **extra}
        return {"index": index, "text": text or "", "finish_reason": finish, "logprobs": None,
                **extra}

    try:
        if chat:
            yield frame([{"index": i, "delta": {"role": "assistant", "content": ""},
                          "finish_reason": None, "logprobs": None} for i in range(count)])
        async for event in events:
            if isinstance(event, TextDelta):
                if event.text:
                    yield frame([piece(event.index, event.text)])
                continue
            for c in event.choices:
                yield frame([piece(c.index, None, c.finish_reason, leti=_extension(c))])
            if include_usage:
                yield frame([], usage=usage(event.prompt_tokens, event.completion_tokens))
    except Exception as exc:
        down = isinstance(exc, (BackendUnavailable, Unavailable))
        if not down:
            log.exception("stream failed after it started", exc_info=exc)
        message = str(exc) if down else "internal error (logged on the server)"
        yield f"data: {json.dumps(error_body(message, 503 if down else 500))}\n\n".encode()
    yield b"data: [DONE]\n\n"
