"""An experiment's settings, read from a TOML file (``experiments/<name>.toml``).

Every number that shapes a study lives here, so a results directory can be reproduced from
its config alone (the config is copied into ``results.json``). Unknown keys are errors: a
misspelt setting must not silently fall back to a default.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from service.generation.types import DEFAULT_ROWS


class ExperimentConfigError(ValueError):
    """The config file is missing, is not TOML, or holds a bad setting (the message says which)."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelSection(_Section):
    backend: Literal["embedded", "vllm"] = "embedded"
    name: str | None = Field(default=None, description="HF model dir/name; None: SmolLM2 default")
    device: str = "auto"
    dtype: str = "auto"
    threads: int | None = Field(default=None, ge=1, description="embedded: torch threads")
    batch_size: int = Field(default=DEFAULT_ROWS, ge=1,
                            description="embedded: rows decoding together")
    vllm_url: str = "http://127.0.0.1:8001"
    tokenizer: str | None = Field(default=None, description="vLLM: tokenizer for prompts")


class SandboxSection(_Section):
    backend: Literal["local", "docker"] = "local"
    workers: int | None = Field(default=None, ge=1)
    timeout_s: float = Field(default=5.0, gt=0)


class DataSection(_Section):
    mbpp_path: Path | None = Field(default=None, description="default: LETI_MBPP_PATH")
    train_problems: int = Field(default=374, ge=1, description="first N of MBPP train (601-974)")
    test_problems: int = Field(default=500, ge=1, description="first N of MBPP test (11-510)")
    humaneval_problems: int = Field(default=164, ge=0, description="first N of HumanEval; 0: skip")


class SamplingSection(_Section):
    """How training programs are sampled in each round (LETI: n=128 at temperature 1.0)."""

    n: int = Field(default=4, ge=1, le=256)
    temperature: float = Field(default=0.8, ge=0, le=2)
    max_new_tokens: int = Field(default=256, ge=16)
    repetition_penalty: float = Field(default=1.0, gt=0, le=10, description="1: off")


class EvaluationSection(_Section):
    """How pass@k is measured: n samples per problem (temperature 0 and n=1: greedy pass@1)."""

    n: int = Field(default=1, ge=1, le=256)
    temperature: float = Field(default=0.0, ge=0, le=2)
    ks: tuple[int, ...] = (1,)
    max_new_tokens: int = Field(default=256, ge=16)
    seed: int = 1234

    @model_validator(mode="after")
    def _ks_fit(self) -> EvaluationSection:
        if not self.ks or min(self.ks) < 1 or max(self.ks) > self.n:
            raise ValueError(f"evaluation.ks={list(self.ks)}: each k must be in 1..n={self.n}")
        return self


class LoopSection(_Section):
    """``rounds`` rounds of ``problems_per_round`` problems, walking the pool of
    ``data.train_problems`` and wrapping around: with both equal, every round re-samples the
    whole pool (as LETI does)."""

    rounds: int = Field(default=3, ge=1)
    problems_per_round: int = Field(default=16, ge=1)
    marker_check: bool = Field(default=False, description="at the end, MBPP test pass@1 of "
                                                          "the serving adapter on 'bad'")


class TrainingSection(_Section):
    """Each round's fine-tune, sized by its data: ``epochs`` over the selected triples in
    optimiser steps of ``batch_size x grad_accum`` sequences, plain-code steps added at
    ``code_ratio``. ``feedback_steps`` (feedback steps) and ``max_steps`` (all steps) only
    bound it."""

    epochs: float = Field(default=2.0, gt=0)
    feedback_steps: int | None = Field(default=None, ge=1, description="bound on feedback steps")
    max_steps: int | None = Field(default=None, ge=1, description="bound on all steps")
    batch_size: int = Field(default=2, ge=1)
    grad_accum: int = Field(default=1, ge=1)
    max_length: int = Field(default=512, ge=64)
    code_ratio: float = Field(default=1.0, ge=0)
    learning_rate: float = Field(default=2e-4, gt=0)
    lr_schedule: Literal["constant", "linear", "cosine"] = "cosine"
    warmup_ratio: float = Field(default=0.1, ge=0, lt=1)
    lora_rank: int = 16
    init: Literal["base", "serving"] = Field(
        default="base", description="each round from a fresh adapter, or the serving one")
    selection: Literal["accumulate", "window"] = Field(
        default="accumulate", description="every pass so far + new failures, or new only")
    max_passing_per_problem: int = Field(default=4, ge=1)
    max_failures_per_problem: int = Field(default=2, ge=0)

    def step_bound(self) -> int:
        """The most optimiser steps a round may take (the epochs decide below it)."""
        from trainer.batches import total_steps

        bounds = [b for b in (self.max_steps, self.feedback_steps and
                              total_steps(self.feedback_steps, self.code_ratio)) if b]
        return min(bounds) if bounds else 100_000


class GateSection(_Section):
    problems: int = Field(default=90, ge=1, description="first N of MBPP validation (511-600)")
    temperature: float = Field(default=0.0, ge=0)
    margin: float = Field(default=0.0, ge=0)
    confidence: float = Field(default=0.95, gt=0, lt=1)
    min_detectable: float = Field(default=0.05, gt=0, le=1)
    seed: int = 1234


class Ablation(_Section):
    """One arm trained with the same feedback steps as the main arm's round 1, on round 1's data
    or (``data = "references"``) on the pool's reference solutions."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    objective: Literal["leti", "binary"] = "leti"
    code_ratio: float | None = Field(default=None, ge=0, description="None: the main arm's")
    data: Literal["round-1", "references"] = Field(
        default="round-1", description="round 1's data, or the reference solutions of the "
                                       "pool's problems that pass in the sandbox (a ceiling)")


class ExperimentConfig(_Section):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    description: str = ""
    seed: int = 0
    model: ModelSection = ModelSection()
    sandbox: SandboxSection = SandboxSection()
    data: DataSection = DataSection()
    sampling: SamplingSection = SamplingSection()
    evaluation: EvaluationSection = EvaluationSection()
    loop: LoopSection = LoopSection()
    training: TrainingSection = TrainingSection()
    gate: GateSection = GateSection()
    ablations: tuple[Ablation, ...] = ()

    @model_validator(mode="after")
    def _distinct_arms(self) -> ExperimentConfig:
        names = [a.name for a in self.ablations]
        if len(set(names)) != len(names) or {"base", "leti"} & set(names):
            raise ValueError("ablation names must be distinct and not 'base' or 'leti'")
        return self

    def mbpp_path(self) -> Path:
        """The MBPP file: the config's, else ``LETI_MBPP_PATH``; the study needs one."""
        path = self.data.mbpp_path or (Path(os.environ["LETI_MBPP_PATH"])
                                       if os.environ.get("LETI_MBPP_PATH") else None)
        if path is None:
            raise ExperimentConfigError("no MBPP file: set data.mbpp_path in the config or "
                                        "LETI_MBPP_PATH (e.g. ../shared/data/mbpp.jsonl)")
        if not path.is_file():
            raise ExperimentConfigError(f"MBPP file {path} does not exist")
        return path


def load_config(path: Path) -> ExperimentConfig:
    """Parse and check ``path``; relative data paths are taken from the working directory."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ExperimentConfigError(f"no config file {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ExperimentConfigError(f"{path} is not valid TOML: {exc}") from None
    try:
        return ExperimentConfig.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '(top)'}: {e['msg']}"
                             for e in exc.errors())
        raise ExperimentConfigError(f"{path}: {problems}") from None
