"""Fixtures for the API tests: real apps on a real SQLite store and the local sandbox, served by
uvicorn on 127.0.0.1 when a test speaks HTTP, and a tiny random model for the embedded backend."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from service.api.app import create_app
from service.core.config import Settings

TINY = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=2048, tie_word_embeddings=True)


def make_settings(data_dir: Path, mbpp_path: Path, **overrides: Any) -> Settings:
    """Settings for a test app: its own data directory, MBPP, two sandbox workers, no model."""
    values: dict[str, Any] = dict(data_dir=data_dir, mbpp_path=mbpp_path, sandbox_workers=2,
                                  generator_backend="none", database_url=None, api_key=None)
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.fixture
def settings_for(tmp_path: Path, mbpp_path: Path) -> Any:
    """``settings_for(**overrides)``: settings rooted in this test's temporary directory."""
    return lambda **overrides: make_settings(tmp_path / "data", mbpp_path, **overrides)


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory, mbpp_path: Path) -> Iterator[TestClient]:
    """One app per test module (store, catalogue and sandbox started once), no generator."""
    app = create_app(make_settings(tmp_path_factory.mktemp("data"), mbpp_path))
    with TestClient(app) as test_client:
        yield test_client


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LiveServer:
    """An app served by uvicorn on 127.0.0.1 in a background thread (its own event loop)."""

    def __init__(self, app: FastAPI) -> None:
        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port,
                                                    log_level="warning", lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 300
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the test server did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *_: object) -> None:
        self.server.should_exit = True
        self.thread.join(60)

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=600, **kwargs)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer random Llama with SmolLM2's real tokenizer, saved as a model directory, so the
    embedded backend loads it like any model (fast, but it writes nonsense programs)."""
    torch = pytest.importorskip("torch")
    from transformers import LlamaConfig, LlamaForCausalLM

    from trainer.base_model import load_tokenizer, resolve_model_source

    tokenizer = load_tokenizer(resolve_model_source(None))
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), bos_token_id=1,
                         eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id, **TINY)
    target = tmp_path_factory.mktemp("tiny-model")
    LlamaForCausalLM(config).save_pretrained(target)
    tokenizer.save_pretrained(target)
    return target
