"""Fixtures for benchmark tests: the API test helpers (real app, SQLite, local sandbox, tiny
random model for the embedded backend), loaded from tests/api/conftest.py by path."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest


def _api_helpers() -> ModuleType:
    name = "leti_api_test_helpers"
    if name not in sys.modules:
        path = Path(__file__).resolve().parents[1] / "api" / "conftest.py"
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


helpers = _api_helpers()
tiny_model_dir = helpers.tiny_model_dir  # the session fixture, shared


@pytest.fixture(scope="session")
def settings_maker() -> Callable[..., Any]:
    """``make_settings(data_dir, mbpp_path, **overrides)`` of the API tests."""
    return helpers.make_settings
