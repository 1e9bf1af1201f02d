"""Fixtures for the loop tests: a real app (SQLite, local sandbox, embedded tiny random model,
real trainer subprocess) served over HTTP on 127.0.0.1, restartable on the same data directory."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.core.config import Settings
from tests.api.conftest import LiveServer, tiny_model_dir  # noqa: F401 - the fixture, reused

LOOP_TEST_SETTINGS: dict[str, Any] = {
    "sandbox_workers": 2, "generator_backend": "embedded", "generator_threads": 1,
    "load_humaneval": False, "mbpp_path": None, "loop_mbpp_hub": False,
    "loop_problems_per_round": 2, "loop_samples_per_problem": 2, "loop_max_new_tokens": 24,
    "train_min_new_triples": 8, "train_interval_s": 0, "train_steps": 2, "train_batch_size": 2,
    "train_max_length": 256, "gate_problems": 3, "database_url": None, "api_key": None,
    # the tiny random model's programs all run into the token limit: keep them to train on
    "train_truncated": "keep"}


@pytest.fixture
def loop_settings(tmp_path: Path, tiny_model_dir: Path) -> Callable[..., Settings]:  # noqa: F811
    """``loop_settings(**overrides)``: one data directory per test, the tiny model, small loop."""
    def make(**overrides: Any) -> Settings:
        values = {**LOOP_TEST_SETTINGS, "data_dir": tmp_path / "data",
                  "generator_model": str(tiny_model_dir), **overrides}
        return Settings(_env_file=None, **values)  # type: ignore[call-arg]
    return make


def serve(settings: Settings) -> LiveServer:
    from service.api.app import create_app

    return LiveServer(create_app(settings))


def wait_for(client: httpx.Client, path: str, done: Callable[[dict[str, Any]], bool],
             timeout: float = 300.0) -> dict[str, Any]:
    """Poll ``path`` until ``done(body)``; fail with the last body after ``timeout``."""
    deadline = time.monotonic() + timeout
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        body = client.get(path).json()
        if done(body):
            return body
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting on {path}: {body}")
