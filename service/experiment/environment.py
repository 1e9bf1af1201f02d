"""What a study runs on: the service settings it builds its components with, and the machine
and library versions its results record beside every figure."""

from __future__ import annotations

import os
import platform
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

from service.core.config import Settings
from service.core.machine import cpu_model
from service.experiment.config import ExperimentConfig
from service.experiment.results import Environment, Machine


def settings_for(config: ExperimentConfig, state_dir: Path) -> Settings:
    """Service settings for the study: its own store and adapters under ``state_dir``; the
    model, sandbox, sampling, training and gate as the config says; the loop never runs."""
    sampling, training, gate = config.sampling, config.training, config.gate
    return Settings(
        data_dir=state_dir, database_url=f"sqlite:///{(state_dir / 'leti.db').resolve()}",
        mbpp_path=config.mbpp_path(), load_humaneval=config.data.humaneval_problems > 0,
        sandbox_backend=config.sandbox.backend, sandbox_workers=config.sandbox.workers,
        sandbox_timeout_s=config.sandbox.timeout_s,
        generator_backend=config.model.backend, generator_model=config.model.name,
        generator_device=config.model.device, generator_dtype=config.model.dtype,
        generator_batch_size=config.model.batch_size, generator_threads=config.model.threads,
        vllm_url=config.model.vllm_url, tokenizer=config.model.tokenizer,
        max_n=max(sampling.n, config.evaluation.n), loop_enabled=False, loop_mbpp_hub=False,
        loop_pool_size=config.data.train_problems,
        loop_problems_per_round=config.loop.problems_per_round,
        loop_samples_per_problem=sampling.n, loop_temperature=sampling.temperature,
        loop_max_new_tokens=sampling.max_new_tokens,
        train_selection=training.selection,
        train_max_passing_per_problem=training.max_passing_per_problem,
        train_max_failures_per_problem=training.max_failures_per_problem,
        train_epochs=training.epochs, train_steps=training.step_bound(),
        train_batch_size=training.batch_size, train_grad_accum=training.grad_accum,
        train_max_length=training.max_length, train_code_ratio=training.code_ratio,
        train_learning_rate=training.learning_rate, train_lr_schedule=training.lr_schedule,
        train_warmup_ratio=training.warmup_ratio, train_init=training.init,
        gate_problems=gate.problems, gate_margin=gate.margin,
        gate_confidence=gate.confidence, gate_min_detectable=gate.min_detectable,
        gate_temperature=gate.temperature, gate_seed=gate.seed)


def environment() -> Environment:
    """The machine and library versions a figure was measured with, from now on."""
    versions = {}
    for name in ("leti-loop", "torch", "transformers", "peft", "vllm"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    gpu = None
    try:
        import torch

        if torch.cuda.is_available():
            gpu = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    machine = Machine(cpu=cpu_model(), cores=os.cpu_count(), gpu=gpu,
                      system=f"{platform.system()} {platform.release()}",
                      python=platform.python_version())
    return Environment(machine=machine, versions=versions, started_at=now(), finished_at=None,
                       wall_s=0.0)


def now() -> str:
    """The time a results file records: UTC, to the second."""
    return datetime.now(UTC).isoformat(timespec="seconds")
