"""Shared fixtures: the real MBPP file, and real sandboxes of each backend (session-scoped, warm)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from sandbox import RunnerPool, make_sandbox

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def mbpp_path() -> Path:
    """MBPP lives beside the repository (never committed); LETI_MBPP_PATH overrides."""
    path = Path(os.environ.get("LETI_MBPP_PATH", REPO.parent / "shared" / "data" / "mbpp.jsonl"))
    if not path.is_file():
        pytest.fail(f"MBPP not found at {path}: set LETI_MBPP_PATH to the mbpp.jsonl file")
    return path


@pytest.fixture(scope="session")
def local_sandbox() -> Iterator[RunnerPool]:
    with make_sandbox("local", workers=2) as sandbox:
        yield sandbox


@pytest.fixture(scope="session")
def docker_sandbox() -> Iterator[RunnerPool]:
    """The docker backend for real: needs the engine and image that scripts/install.sh sets up."""
    with make_sandbox("docker", workers=2) as sandbox:
        yield sandbox


@pytest.fixture(params=["local", pytest.param("docker", marks=pytest.mark.docker)])
def sandbox(request: pytest.FixtureRequest) -> RunnerPool:
    """Each test that takes ``sandbox`` runs once per backend."""
    return request.getfixturevalue(f"{request.param}_sandbox")
