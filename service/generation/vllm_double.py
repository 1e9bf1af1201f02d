"""A test double of the vLLM OpenAI-compatible server, backed by the embedded generator.

NOT vLLM. It implements only the endpoints this project uses, with the request fields, response
shapes, status codes and error messages of the pinned vLLM version (``VLLM_VERSION``; see
docs/GENERATION.md for which behaviours come from vLLM's docs and source and which are the
double's own): ``GET /v1/models``, ``POST /v1/completions`` (list prompts, ``n``, ``stop``,
``seed``, ``return_token_ids``), and, only when runtime LoRA updating is allowed (vLLM's
``VLLM_ALLOW_RUNTIME_LORA_UPDATING=True``), ``POST /v1/load_lora_adapter`` and
``POST /v1/unload_lora_adapter``. Answers are real: they come from the embedded model.
``Faults`` (not a vLLM feature) lets tests make it slow or failing.

Run by hand: ``python -m service.generation.vllm_double --port 8000``.
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


class CompletionRequest(BaseModel):
    """The ``/v1/completions`` fields the double honours (vLLM accepts many more)."""

    model: str
    prompt: str | list[str]
    n: int = 1
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = 16
    stop: str | list[str] | None = None
    seed: int | None = None
    return_token_ids: bool | None = None


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
               allow_runtime_lora_updating: bool = True, max_model_len: int = 8192) -> Any:
    """The FastAPI app; ``generator`` must not be shared with other users (its adapters are the
    server's LoRA modules)."""
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import PlainTextResponse

    app = FastAPI(title=f"vLLM test double (not vLLM; follows {served_model_name})")
    app.state.faults = Faults()
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
        if req.model != served_model_name and req.model not in loras:
            return _error(f"The model `{req.model}` does not exist.", "NotFoundError",
                          HTTPStatus.NOT_FOUND)
        prompts = [req.prompt] if isinstance(req.prompt, str) else req.prompt
        stop = [req.stop] if isinstance(req.stop, str) else (req.stop or [])
        try:
            params = SamplingParams(n=req.n, temperature=1.0 if req.temperature is None
                                    else req.temperature, top_p=req.top_p or 1.0,
                                    max_new_tokens=req.max_tokens or 16, stop=tuple(stop),
                                    seed=req.seed)
            adapter = req.model if req.model in loras else "base"
            results = await generator.generate(prompts, params, adapter=adapter)
        except ValueError as exc:
            return _error(str(exc), "BadRequestError", HTTPStatus.BAD_REQUEST)
        choices: list[dict[str, Any]] = []
        for samples in results:
            for sample in samples:
                choice: dict[str, Any] = {
                    "index": len(choices), "text": sample.text, "logprobs": None,
                    "finish_reason": sample.finish_reason, "stop_reason": None,
                    "prompt_logprobs": None}
                if req.return_token_ids:  # the double reports counts as ids of the right length
                    choice["prompt_token_ids"] = [0] * sample.prompt_tokens
                    choice["token_ids"] = [0] * sample.completion_tokens
                choices.append(choice)
        prompt_tokens = sum(s[0].prompt_tokens for s in results)
        completion_tokens = sum(c.completion_tokens for s in results for c in s)
        return {"id": f"cmpl-{uuid.uuid4().hex}", "object": "text_completion",
                "created": int(time.time()), "model": req.model, "choices": choices,
                "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                          "total_tokens": prompt_tokens + completion_tokens,
                          "prompt_tokens_details": None}}

    if not allow_runtime_lora_updating:
        return app  # like vLLM: the routes do not exist, FastAPI answers 404 {"detail": ...}

    @app.post("/v1/load_lora_adapter")
    async def load_lora_adapter(req: LoadRequest) -> Any:
        if not req.lora_name or not req.lora_path:
            return _error("Both 'lora_name' and 'lora_path' must be provided.",
                          "InvalidUserInput", HTTPStatus.BAD_REQUEST)
        if req.lora_name in loras:
            return _error(f"The lora adapter '{req.lora_name}' has already been loaded.",
                          "InvalidUserInput", HTTPStatus.BAD_REQUEST)
        problem = _vllm_load_problem(Path(req.lora_path), max_lora_rank)
        if problem is not None:
            return _error(*problem)
        try:
            await generator.load_adapter(req.lora_name, req.lora_path)
        except ValueError as exc:
            return _error(str(exc), "BadRequestError", HTTPStatus.BAD_REQUEST)
        loras[req.lora_name] = req.lora_path
        return PlainTextResponse(f"Success: LoRA adapter '{req.lora_name}' added successfully.")

    @app.post("/v1/unload_lora_adapter")
    async def unload_lora_adapter(req: UnloadRequest) -> Any:
        if not req.lora_name and not req.lora_int_id:
            return _error("either 'lora_name' and 'lora_int_id' needs to be provided.",
                          "InvalidUserInput", HTTPStatus.BAD_REQUEST)
        if req.lora_name not in loras:
            return _error(f"The lora adapter '{req.lora_name}' cannot be found.",
                          "NotFoundError", HTTPStatus.NOT_FOUND)
        del loras[req.lora_name]  # vLLM stops routing to it at once
        await generator.unload_adapter(req.lora_name)
        return PlainTextResponse(f"Success: LoRA adapter '{req.lora_name}' removed successfully.")

    return app


def _vllm_load_problem(path: Path, max_rank: int) -> tuple[str, str, HTTPStatus] | None:
    """The error vLLM gives for an adapter it cannot load (missing dir: 404, else 400)."""
    config_file = path / "adapter_config.json"
    if not config_file.is_file():
        return (f"Loading lora {path.name} failed: No adapter found for {path}",
                "NotFoundError", HTTPStatus.NOT_FOUND)
    config = json.loads(config_file.read_text())
    rank = max([config.get("r", 8), *dict(config.get("rank_pattern") or {}).values()])
    if rank > max_rank:
        return (f"LoRA rank {rank} is greater than max_lora_rank {max_rank}.",
                "BadRequestError", HTTPStatus.BAD_REQUEST)
    if config.get("modules_to_save"):
        message = (f"While loading {path}, expected target modules in the model's "
                   f"LoRA-supported modules but received {config['modules_to_save']}. Please "
                   "verify that the loaded LoRA module is correct")
        return message, "BadRequestError", HTTPStatus.BAD_REQUEST
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
