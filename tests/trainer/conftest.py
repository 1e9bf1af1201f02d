"""Fixtures for trainer tests: tiny random models built offline (see tiny_models.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from tiny_models import build_tiny_model, write_triples


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny chat model directory, usable as ``base_model``."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny-chat"))


@pytest.fixture(scope="session")
def tiny_plain_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny base (no chat template) model directory."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny-plain"), chat=False)


@pytest.fixture
def triples_file(tmp_path: Path) -> Path:
    return write_triples(tmp_path / "triples.jsonl")
