"""A test double of the vLLM OpenAI-compatible server, backed by the embedded generator.

NOT vLLM. It implements only the endpoints this project uses, with the request fields, response
shapes, status codes and error messages of the pinned vLLM version (``VLLM_VERSION``; see
docs/GENERATION.md for which behaviours come from vLLM's docs and source and which are the
double's own): ``GET /v1/models``, ``POST /v1/completions`` (list prompts, ``n``, ``stop``,
``seed``, ``return_token_ids``, ``add_special_tokens``, ``stream`` as server-sent events with
``stream_options.include_usage``, a 400 for a prompt plus ``max_tokens`` over the context), and,
only when runtime LoRA updating is allowed (vLLM's ``VLLM_ALLOW_RUNTIME_LORA_UPDATING=True``),
``POST /v1/load_lora_adapter`` (an adapter the engine fails to load: 500, a missing one: 404) and
``POST /v1/unload_lora_adapter``. Prompts are tokenized as vLLM does, with the served model's
tokenizer and ``add_special_tokens`` (default true: a tokenizer that adds BOS adds it); answers
are real: they come from the embedded model. ``Faults`` (not a vLLM feature) lets tests make it
slow or failing, and ``app.state.requests`` keeps every completion request's body.

Run by hand from the repository root: ``python -m tests.generation.vllm_double --port 8000``.
It lives with the tests: nothing in the product imports it.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from service.generation.embedded import EmbeddedGenerator
from service.generation.types import SamplingParams


class StreamOptions(BaseModel):
    include_usage: bool | None = None


class CompletionRequest(BaseModel):
    """The ``/v1/completions`` fields the double honours (vLLM accepts many more)."""

    model: str
    prompt: str | list[str]
    n: int = 1
    temperature: float | None = None
    top_p: float | None = None
    repetition_penalty: float | None = None  # vLLM's also counts the prompt's tokens (ours: not)
    max_tokens: int | None = 16
    stop: str | list[str] | None = None
    seed: int | None = None
    return_token_ids: bool | None = None
    add_special_tokens: bool = True  # vLLM's default for /v1/completions
    stream: bool = False
    stream_options: StreamOptions | None = None


class LoadRequest(BaseModel):
    lora_name: str = ""
    lora_path: str = ""


class UnloadRequest(BaseModel):
    lora_name: str = ""
    lora_int_id: int | None = None


@dataclass
class Faults:
    """Injected misbehaviour: the next ``fail_next`` requests answer ``status``; every request
    waits ``delay_s`` first. Mutate ``app.state.faults`` from a test."""

    fail_next: int = 0
    status: int = 503
    delay_s: float = 0.0


def _error(message: str, err_type: str, status: HTTPStatus) -> Any:
    from fastapi.responses import JSONResponse

    # vLLM >= 0.10.1 nests the error object (ErrorResponse{error: ErrorInfo}).
    return JSONResponse({"error": {"message": message, "type": err_type, "param": None,
                                   "code": status.value}}, status_code=status.value)


def create_app(generator: EmbeddedGenerator, served_model_name: str, *, max_lora_rank: int = 16,
               allow_runtime_lora_updating: bool = True, max_model_len: int = 8192,
               tokenizer: Any = None) -> Any:
    """The FastAPI app; ``generator`` must not be shared with other users (its adapters are the
    server's LoRA modules). ``tokenizer``: the served model's (default: the generator's)."""
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import PlainTextResponse

    app = FastAPI(title=f"vLLM test double (not vLLM; follows {served_model_name})")
    app.state.faults = Faults()
    app.state.requests = []  # every completion request body, for tests
    tokenizer = tokenizer or generator.tokenizer
    loras: dict[str, str] = {}  # name -> path, in load order
    created = int(time.time())

    @app.middleware("http")
    async def inject_faults(request: Request, call_next: Any) -> Any:
        faults: Faults = app.state.faults
        if faults.delay_s:
            await asyncio.sleep(faults.delay_s)
        if faults.fail_next > 0:
            faults.fail_next -= 1
            status = HTTPStatus(faults.status)
            return _error(f"injected fault: {status.phrase}", "InternalServerError", status)
        return await call_next(request)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> Any:
        return _error(str(exc.errors()), "BadRequestError", HTTPStatus.BAD_REQUEST)

    @app.get("/health")
    async def health() -> PlainTextResponse:
        return PlainTextResponse("")

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        base = {"id": served_model_name, "object": "model", "created": created,
                "owned_by": "vllm", "root": served_model_name, "parent": None,
                "max_model_len": max_model_len, "permission": []}
        cards: list[dict[str, Any]] = [{"id": name, "object": "model", "created": created, "owned_by": "vllm",
                  "root": path, "parent": served_model_name, "max_model_len": None,
                  "permission": []} for name, path in loras.items()]
        return {"object": "list", "data": [base, *cards]}

    @app.post("/v1/completions")
    async def completions(req: CompletionRequest) -> Any:
        app.state.requests.append(req.model_dump())
        if req.model != served_model_name and req.model not in loras:
            return _error(f"The model `{req.model}` does not exist.", "NotFoundError",
                          HTTPStatus.NOT_FOUND)
        prompts = [req.prompt] if isinstance(req.prompt, str) else req.prompt
        encoded = [_tokenized(tokenizer, p, req.add_special_tokens) for p in prompts]
        too_long = _over_context(encoded, req.max_tokens or 16, max_model_len)
        if too_long is not None:
            return _error(too_long, "BadRequestError", HTTPStatus.BAD_REQUEST)
        stop = [req.stop] if isinstance(req.stop, str) else (req.stop or [])
        try:
            params = SamplingParams(n=req.n, temperature=1.0 if req.temperature is None
                                    else req.temperature, top_p=req.top_p or 1.0,
                                    max_new_tokens=req.max_tokens or 16, stop=tuple(stop),
                                    seed=req.seed,
                                    repetition_penalty=req.repetition_penalty or 1.0)
            adapter = req.model if req.model in loras else "base"
            results = await generator.generate([text for text, _ in encoded], params,
                                               adapter=adapter)
        except ValueError as exc:
            return _error(str(exc), "BadRequestError", HTTPStatus.BAD_REQUEST)
        choices: list[dict[str, Any]] = []
        for (_, ids), samples in zip(encoded, results, strict=True):
            for sample in samples:
                choice: dict[str, Any] = {
                    "index": len(choices), "text": sample.text, "logprobs": None,
                    "finish_reason": sample.finish_reason, "stop_reason": None,
                    "prompt_logprobs": None}
                if req.return_token_ids:  # prompt ids real; the output's of the right length
                    choice["prompt_token_ids"] = ids
                    choice["token_ids"] = [0] * sample.completion_tokens
                choices.append(choice)
        prompt_tokens = sum(len(ids) for _, ids in encoded)
        completion_tokens = sum(c.completion_tokens for s in results for c in s)
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                 "total_tokens": prompt_tokens + completion_tokens,
                 "prompt_tokens_details": None}
        head = {"id": f"cmpl-{uuid.uuid4().hex}", "object": "text_completion",
                "created": int(time.time()), "model": req.model}
        if req.stream:
            from fastapi.responses import StreamingResponse

            with_usage = bool(req.stream_options and req.stream_options.include_usage)
            return StreamingResponse(_sse(head, choices, usage if with_usage else None),
                                     media_type="text/event-stream")
        return {**head, "choices": choices, "usage": usage}

    if not allow_runtime_lora_updating:
        return app  # like vLLM: the routes do not exist, FastAPI answers 404 {"detail": ...}

    @app.post("/v1/load_lora_adapter")
    async def load_lora_adapter(req: LoadRequest) -> Any:
        if not req.lora_name or not req.lora_path:
            return _error("Both 'lora_name' and 'lora_path' must be provided.",
                          "InvalidUserInput", HTTPStatus.BAD_REQUEST)
        if req.lora_name in loras:
            return _error(f"The lora adapter '{req.lora_name}' has already been loaded. If you "
                          "want to load the adapter in place, set 'load_inplace' to True.",
                          "InvalidUserInput", HTTPStatus.BAD_REQUEST)
        problem = _vllm_load_problem(Path(req.lora_path), max_lora_rank)
        if problem is not None:
            return _error(*problem)
        try:
            await generator.load_adapter(req.lora_name, req.lora_path)
        except ValueError as exc:  # the engine could not load it: vLLM answers 500
            return _error(str(exc), "InternalServerError", HTTPStatus.INTERNAL_SERVER_ERROR)
        loras[req.lora_name] = req.lora_path
        return PlainTextResponse(f"Success: LoRA adapter '{req.lora_name}' added successfully.")

    @app.post("/v1/unload_lora_adapter")
    async def unload_lora_adapter(req: UnloadRequest) -> Any:
        if not req.lora_name:
            return _error("'lora_name' needs to be provided to unload a LoRA adapter.",
                          "InvalidUserInput", HTTPStatus.BAD_REQUEST)
        if req.lora_name not in loras:
            return _error(f"The lora adapter '{req.lora_name}' cannot be found.",
                          "NotFoundError", HTTPStatus.NOT_FOUND)
        del loras[req.lora_name]  # vLLM stops routing to it at once
        await generator.unload_adapter(req.lora_name)
        return PlainTextResponse(f"Success: LoRA adapter '{req.lora_name}' removed successfully.")

    return app


def _tokenized(tokenizer: Any, prompt: str, add_special_tokens: bool) -> tuple[str, list[int]]:
    """(text the embedded model is given, the ids vLLM would run): as vLLM tokenizes a text
    prompt. Special tokens the tokenizer adds (a BOS) are put in front of the text, so the
    embedded model, which never adds them itself to chat text, sees the same ids."""
    ids = list(tokenizer(prompt, add_special_tokens=add_special_tokens)["input_ids"])
    plain = list(tokenizer(prompt, add_special_tokens=False)["input_ids"])
    extra = len(ids) - len(plain)
    if extra > 0 and ids[extra:] == plain:
        return tokenizer.decode(ids[:extra]) + prompt, ids
    return prompt, ids


def _over_context(encoded: list[tuple[str, list[int]]], max_tokens: int,
                  max_model_len: int) -> str | None:
    """vLLM's refusal of a prompt that does not fit with its completion (a 400)."""
    for _, ids in encoded:
        if len(ids) + max_tokens > max_model_len:
            return (f"This model's maximum context length is {max_model_len} tokens. However, "
                    f"you requested {len(ids) + max_tokens} tokens ({len(ids)} in the "
                    f"messages, {max_tokens} in the completion). Please reduce the length of "
                    "the messages or completion.")
    return None


async def _sse(head: dict[str, Any], choices: list[dict[str, Any]],
               usage: dict[str, Any] | None) -> Any:
    """vLLM's completion stream: each choice's text in pieces (token ids with the pieces when
    asked), the finish reason on its last piece, the usage alone at the end, then [DONE]."""
    for choice in choices:
        text, count = choice["text"], len(choice.get("token_ids") or [])
        step = max(1, -(-len(text) // 3))  # up to three pieces
        pieces = [text[i:i + step] for i in range(0, len(text), step)] or [""]
        for k, piece in enumerate(pieces):
            last = k == len(pieces) - 1
            part: dict[str, Any] = {"index": choice["index"], "text": piece, "logprobs": None,
                                    "finish_reason": choice["finish_reason"] if last else None,
                                    "stop_reason": None}
            if "token_ids" in choice:
                share = count // len(pieces) + (count % len(pieces) if last else 0)
                part["token_ids"] = [0] * share
                if k == 0:
                    part["prompt_token_ids"] = choice["prompt_token_ids"]
            chunk = {**head, "choices": [part]}
            if usage is not None:
                chunk["usage"] = None
            yield f"data: {json.dumps(chunk)}\n\n"
    if usage is not None:
        yield f"data: {json.dumps({**head, 'choices': [], 'usage': usage})}\n\n"
    yield "data: [DONE]\n\n"


def _vllm_load_problem(path: Path, max_rank: int) -> tuple[str, str, HTTPStatus] | None:
    """The error vLLM gives for an adapter it cannot load: a missing directory is a 404
    (``LoRAAdapterNotFoundError``); whatever else the engine refuses, a 500 with its message."""
    config_file = path / "adapter_config.json"
    if not config_file.is_file():
        return (f"Loading lora {path.name} failed: No adapter found for {path}",
                "NotFoundError", HTTPStatus.NOT_FOUND)
    config = json.loads(config_file.read_text())
    rank = max([config.get("r", 8), *dict(config.get("rank_pattern") or {}).values()])
    if rank > max_rank:
        return (f"LoRA rank {rank} is greater than max_lora_rank {max_rank}.",
                "InternalServerError", HTTPStatus.INTERNAL_SERVER_ERROR)
    if config.get("modules_to_save"):
        message = (f"While loading {path}, expected target modules in the model's "
                   f"LoRA-supported modules but received {config['modules_to_save']}. Please "
                   "verify that the loaded LoRA module is correct")
        return message, "InternalServerError", HTTPStatus.INTERNAL_SERVER_ERROR
    return None


def main() -> None:
    """Serve the double over HTTP with the default model (for trying the vLLM backend by hand)."""
    import argparse

    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--model", default=None, help="HF model dir/name (default: SmolLM2)")
    parser.add_argument("--served-model-name", default="SmolLM2-135M-Instruct")
    parser.add_argument("--max-lora-rank", type=int, default=16)
    args = parser.parse_args()
    generator = EmbeddedGenerator.load(args.model, max_lora_rank=None)
    app = create_app(generator, args.served_model_name, max_lora_rank=args.max_lora_rank)
    uvicorn.run(app, host="127.0.0.1", port=args.port)


if __name__ == "__main__":
    main()
