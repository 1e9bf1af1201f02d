"""OpenAI's completions wire format: the request bodies we accept and the objects we answer.

Only what docs/API.md lists as covered is accepted; a parameter OpenAI defines but this server
cannot honour (tools, logprobs, penalties other than 0, ...) is a 400 that names it, and an
unknown field is a 400 too, as OpenAI answers. The ``leti`` extension object (sent with the
official client as ``extra_body={"leti": {...}}``) carries tests to run each answer against.
"""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from service.api.schemas import LongText, Problem, Statement, Text

Stop = Annotated[Text, StringConstraints(min_length=1, max_length=200)]
Name = Annotated[Text, StringConstraints(min_length=1, max_length=300)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Extension(_Body):
    """Ours, not OpenAI's: tests (and setup) to run each answer against in the sandbox; and
    whether to put LETI's "Reward: good" marker before the prompt (default: chat when an
    adapter answers, as ``/v1/generate``; never for raw prompts)."""

    tests: list[Statement] = Field(default_factory=list, max_length=1000)
    setup: LongText = ""
    condition_on_good: bool | None = None


class StreamOptions(_Body):
    include_usage: bool = False


class _Sampling(_Body):
    model: Name
    n: int = Field(1, ge=1, le=128)
    temperature: float = Field(1.0, ge=0, le=2, allow_inf_nan=False)
    top_p: float = Field(1.0, ge=0, le=1, allow_inf_nan=False)
    max_tokens: int | None = Field(None, ge=1)
    stop: Stop | list[Stop] | None = Field(None)
    seed: int | None = Field(None, ge=0, le=2**63 - 1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: Annotated[str, StringConstraints(max_length=200)] | None = None
    # Defined by OpenAI; only their neutral values are accepted (anything else: a 400).
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    logit_bias: dict[str, float] | None = None
    logprobs: Any = None
    leti: Extension | None = None

    @model_validator(mode="after")
    def _neutral(self) -> _Sampling:
        for name in ("presence_penalty", "frequency_penalty"):
            if getattr(self, name) not in (None, 0, 0.0):
                raise ValueError(f"'{name}' is not supported here (only 0)")
        if self.logit_bias:
            raise ValueError("'logit_bias' is not supported here")
        if self.logprobs not in (None, False, 0):
            raise ValueError("'logprobs' is not supported here")
        if isinstance(self.stop, list) and len(self.stop) > 4:
            raise ValueError("'stop' takes at most 4 sequences")
        if self.stream_options is not None and not self.stream:
            raise ValueError("'stream_options' is only allowed with 'stream': true")
        return self

    @property
    def stops(self) -> tuple[str, ...]:
        if self.stop is None:
            return ()
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)


class TextPart(_Body):
    type: Literal["text"]
    text: Text


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")  # e.g. "name", "refusal": not used here

    role: Literal["system", "developer", "user", "assistant"]
    content: LongText | list[TextPart]

    @property
    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class ChatRequest(_Sampling):
    messages: list[ChatMessage] = Field(min_length=1, max_length=256)
    max_completion_tokens: int | None = Field(None, ge=1)
    tools: None = None  # defined by OpenAI, not served here: only null is accepted
    tool_choice: None = None
    response_format: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _plain_text(self) -> ChatRequest:
        if self.response_format not in (None, {"type": "text"}):
            raise ValueError("'response_format' other than text is not supported here")
        if self.max_tokens is not None and self.max_completion_tokens is not None:
            raise ValueError("give 'max_tokens' or 'max_completion_tokens', not both")
        return self

    @property
    def token_limit(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens


class CompletionRequest(_Sampling):
    prompt: LongText | list[LongText] = Field(...)
    max_tokens: int | None = Field(16, ge=1)  # OpenAI's default for completions
    echo: Literal[False] = False
    suffix: None = None
    best_of: Literal[1] | None = None

    @property
    def prompts(self) -> tuple[str, ...]:
        return (self.prompt,) if isinstance(self.prompt, str) else tuple(self.prompt)


# -- answers (plain dicts in OpenAI's shapes; the official client parses them) -------------------

class ErrorObject(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    """OpenAI's error body, on every error of these routes."""

    error: ErrorObject


_WHY = {400: "invalid request (a parameter, a limit, a test that does not compile)",
        401: "missing or wrong API key", 404: "the model is not served",
        503: "the generator or sandbox is down"}


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for the OpenAI-shaped errors a route can give."""
    return {code: {"model": ErrorResponse, "description": _WHY[code]} for code in codes}


COMPLETION_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "the completion (JSON), or with ``stream`` its server-sent events "
                         "ending in ``data: [DONE]``",
          "content": {"application/json": {}, "text/event-stream": {}}},
    **error_responses(400, 401, 404, 503),
    # Refused by the body-size limit before any route runs: the API's own error body.
    413: {"model": Problem, "description": "request body over LETI_MAX_BODY_BYTES"}}

def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def model_list(names: list[str], owner: str = "leti-loop") -> dict[str, Any]:
    created = int(time.time())
    return {"object": "list", "data": [{"id": name, "object": "model", "created": created,
                                        "owned_by": owner} for name in names]}


def error_body(message: str, status: int, param: str | None = None,
               code: str | None = None) -> dict[str, Any]:
    """OpenAI's error object; ``type`` follows the status as OpenAI's own answers do."""
    kind = {400: "invalid_request_error", 401: "invalid_request_error",
            404: "invalid_request_error", 413: "invalid_request_error",
            429: "rate_limit_exceeded"}.get(status, "server_error" if status >= 500
                                            else "invalid_request_error")
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}
