"""One study, run through the service's own components: the store, sandbox and generator that
``leti serve`` builds, the loop's round, trainer process and promotion gate, and the
benchmark sampler and scorer.

Phases, in order, each saved to ``results.json`` when it ends (a re-run with ``resume``
skips the phases already there):

1. ``baseline``: MBPP test and HumanEval pass@k of the base model.
2. ``round-N`` (N = 1..rounds), the LETI arm: sample ``n`` programs for the round's MBPP train
   problems from the serving model, execute them, train a LoRA adapter on the round's triples
   (from the serving adapter), measure the candidate on MBPP test, and gate it on MBPP
   validation (promoted: it serves the next round).
3. ``ablation-<name>`` (after round 1): the same round-1 data and feedback steps from the base
   model, with another objective (binary feedback) or code ratio (no code corpus).
4. ``final``: HumanEval of the last LETI candidate.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from importlib import metadata
from pathlib import Path
from typing import Any

import anyio.to_thread

from service.api.app import build_services
from service.api.deps import Services
from service.api.metrics import Metrics
from service.benchmarks.jobs import BenchmarkSpec, load_bench_tasks, sample_programs
from service.benchmarks.scoring import HUMAN_EVAL_TIMEOUT_S, overall_pass_at_k, score_samples
from service.core.config import Settings
from service.core.evaluation import EvaluationInput
from service.core.generation import BASE, Generation, GenerationInput
from service.experiment.config import Ablation, ExperimentConfig
from service.experiment.report import write_atomic
from service.loop import state
from service.loop.adapters import AdapterSwitch
from service.loop.rounds import next_batch
from service.loop.training import (
    PreparedRun,
    TrainerProcess,
    TrainOptions,
    finish_run,
    next_adapter_name,
    prepare_run,
    trainer_command,
    trainer_env,
)
from trainer.batches import total_steps

log = logging.getLogger(__name__)
SCHEMA = 1
EVAL_CHUNK = 16  # prompts per generator call in evaluations: one decode batch on CPU
SAMPLE_CHUNK = 4  # problems per generator call in rounds (x n samples each)


class StudyError(RuntimeError):
    """The study cannot go on (no generator, no tasks); the message says what to fix."""


@dataclass
class Timer:
    """Seconds spent per phase name, summed."""

    seconds: dict[str, float] = field(default_factory=dict)

    def add(self, name: str, since: float) -> float:
        now = time.perf_counter()
        self.seconds[name] = round(self.seconds.get(name, 0.0) + now - since, 3)
        return now


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
        loop_samples_per_problem=sampling.n, loop_temperature=sampling.temperature,
        loop_max_new_tokens=sampling.max_new_tokens,
        train_steps=total_steps(training.feedback_steps, training.code_ratio),
        train_batch_size=training.batch_size, train_max_length=training.max_length,
        train_code_ratio=training.code_ratio,
        gate_problems=gate.problems, gate_margin=gate.margin,
        gate_temperature=gate.temperature, gate_seed=gate.seed)


def environment() -> dict[str, Any]:
    """The machine and library versions a figure was measured with."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
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
    return {"machine": {"cpu": cpu, "cores": os.cpu_count(), "gpu": gpu,
                        "system": f"{platform.system()} {platform.release()}",
                        "python": platform.python_version()},
            "versions": versions}


def save_json(path: Path, value: dict[str, Any]) -> None:
    """Write atomically: a crash mid-write never leaves a half results file."""
    write_atomic(path, json.dumps(value, indent=2, default=str) + "\n")


class Study:
    """Runs the phases of one config into ``out_dir`` (``results.json``, ``state/``)."""

    def __init__(self, config: ExperimentConfig, out_dir: Path, *, resume: bool = True,
                 on_phase: Callable[[dict[str, Any]], object] | None = None,
                 stop_after: str | None = None) -> None:
        self.config = config
        self.out_dir = out_dir
        self.results_path = out_dir / "results.json"
        self.resume = resume
        self.on_phase = on_phase  # called with the results after each phase (the report)
        self.stop_after = stop_after  # a phase name: end the run there (a partial repeat)
        self.results: dict[str, Any] = {}
        self._stopped = False
        self.services: Services | None = None
        self.switch: AdapterSwitch | None = None

    # -- plumbing ----------------------------------------------------------------------------
    def _start_results(self) -> None:
        config = self.config.model_dump(mode="json")
        if self.resume and self.results_path.is_file():
            previous = json.loads(self.results_path.read_text(encoding="utf-8"))
            if previous.get("config") != config:
                raise StudyError(f"{self.results_path} was made with another config: use a new "
                                 "--output directory or --fresh")
            self.results = previous
            return
        self.results = {"schema": SCHEMA, "name": self.config.name, "config": config,
                        "environment": {**environment(), "started_at": _now(),
                                        "finished_at": None, "wall_s": 0.0},
                        "phases_done": [], "evaluations": [], "rounds": [], "ablations": []}

    def _save(self) -> None:
        save_json(self.results_path, self.results)
        if self.on_phase is not None:
            try:
                self.on_phase(self.results)
            except Exception:  # a broken plot must not lose a finished phase
                log.exception("writing the report failed")

    def phase_names(self) -> list[str]:
        """Every phase of this config, in the order they run."""
        names = ["baseline"]
        for number in range(1, self.config.loop.rounds + 1):
            names.append(f"round-{number}")
            if number == 1:
                names += [f"ablation-{a.name}" for a in self.config.ablations]
        return [*names, "final"]

    async def _phase(self, name: str, body: Callable[[], Awaitable[None]]) -> None:
        if self._stopped:
            return
        if name == self.stop_after:
            self._stopped = True
        if name in self.results["phases_done"]:
            log.info("phase %s: done in an earlier run, skipped", name)
            return
        log.info("phase %s: starting", name)
        started = time.perf_counter()
        await body()
        self.results["phases_done"].append(name)
        env = self.results["environment"]
        env["wall_s"] = round(env.get("wall_s", 0.0) + time.perf_counter() - started, 1)
        self._save()
        log.info("phase %s: done in %.0f s", name, time.perf_counter() - started)

    @property
    def _s(self) -> Services:
        assert self.services is not None, "the study's services are not started"
        return self.services

    @property
    def _generation(self) -> Generation:
        generation = self._s.generation
        assert generation is not None
        return generation

    # -- the study ---------------------------------------------------------------------------
    async def run(self) -> dict[str, Any]:
        """Run every phase not done yet; returns the results (also in ``results.json``)."""
        if self.stop_after is not None and self.stop_after not in self.phase_names():
            raise StudyError(f"no phase {self.stop_after!r}: this config has "
                             f"{', '.join(self.phase_names())}")
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self._start_results()
        state_dir = self.out_dir / "state"
        state_dir.mkdir(exist_ok=True)
        settings = settings_for(self.config, state_dir)
        self.services = await build_services(settings, Metrics())
        try:
            if self._s.generation is None:
                raise StudyError(f"no generator: {self._s.generator_problem}")
            self.switch = AdapterSwitch(settings, self._s.store, self._s.sandbox,
                                        self._s.generation)
            await self.switch.restore_serving()
            await self._phase("baseline", self._baseline)
            for number in range(1, self.config.loop.rounds + 1):
                await self._phase(f"round-{number}", partial(self._round, number))
                if number == 1:
                    for ablation in self.config.ablations:
                        await self._phase(f"ablation-{ablation.name}",
                                          partial(self._ablation, ablation))
            await self._phase("final", self._final)
            if "final" in self.results["phases_done"]:
                self.results["environment"]["finished_at"] = _now()
                self._save()
        finally:
            await self._close()
        return self.results

    async def _close(self) -> None:
        services, self.services = self.services, None
        if services is None:
            return
        if self.switch is not None:
            await self.switch.wait()
        if services.generation is not None:
            await services.generation.close()
        services.sandbox.close()
        services.store.close()

    async def _baseline(self) -> None:
        await self._evaluate("base", 0, "mbpp", None, 0)
        if self.config.data.humaneval_problems > 0:
            await self._evaluate("base", 0, "humaneval", None, 0)

    async def _final(self) -> None:
        if self.config.data.humaneval_problems <= 0 or not self.results["rounds"]:
            return
        last = self.results["rounds"][-1]
        name, generator = last["candidate"], self._generation.generator
        loaded = {a.name for a in generator.list_adapters() if not a.retiring}
        if name not in loaded:  # rejected by the gate (unloaded), or a resumed study
            assert self.switch is not None
            await self.switch.wait()
            await generator.load_adapter(name, last["adapter_dir"])
        await self._evaluate("leti", last["round"], "humaneval", name,
                             last["training"]["feedback_steps"])

    # -- evaluation --------------------------------------------------------------------------
    async def _evaluate(self, arm: str, round_number: int, benchmark: str, adapter: str | None,
                        feedback_steps: int) -> dict[str, Any]:
        """pass@k of ``adapter`` (None: the base model) on the benchmark's first problems,
        stored in the results under ``<arm>[-rN]/<benchmark>``."""
        ev = self.config.evaluation
        limit = (self.config.data.test_problems if benchmark == "mbpp"
                 else self.config.data.humaneval_problems)
        split = "test" if benchmark == "mbpp" else None
        tasks = await anyio.to_thread.run_sync(load_bench_tasks, self._s.store, benchmark,
                                               split, limit)
        if not tasks:
            raise StudyError(f"no {benchmark} tasks in the study's store")
        timeout = HUMAN_EVAL_TIMEOUT_S if benchmark == "humaneval" else \
            self.config.sandbox.timeout_s
        spec = BenchmarkSpec(benchmark, adapter=adapter or BASE, n=ev.n,
                             temperature=ev.temperature, ks=ev.ks, limit=limit, split=split,
                             max_new_tokens=ev.max_new_tokens, seed=ev.seed, timeout_s=timeout)
        timer = Timer()
        per_task: dict[str, dict[str, list[Any]]] = {}
        programs: list[dict[str, Any]] = []
        for start in range(0, len(tasks), EVAL_CHUNK):
            chunk = tasks[start:start + EVAL_CHUNK]
            began = time.perf_counter()
            samples, _ = await sample_programs(spec, self._generation, chunk)
            began = timer.add("sampling", began)
            scored = await score_samples(self._s.sandbox, {b.id: b for _, b in chunk}, samples,
                                         ev.ks, timeout, self._s.settings.sandbox_memory_mb)
            timer.add("execution", began)
            for task in scored.tasks:
                per_task[task.task_id] = {
                    "passed": [r["passed"] for r in task.samples],
                    "statuses": [r["status"] for r in task.samples],
                    "error_types": [r.get("error_type") for r in task.samples]}
                programs += [{"task_id": task.task_id, "program": r["program"],
                              "status": r["status"], "feedback": r["feedback"]}
                             for r in task.samples]
            log.info("%s %s: %d/%d problems", arm, benchmark, len(per_task), len(tasks))
        flags = {task_id: v["passed"] for task_id, v in per_task.items()}
        key = f"{arm}-r{round_number}/{benchmark}" if round_number else f"{arm}/{benchmark}"
        record = {"key": key, "arm": arm, "round": round_number,
                  "feedback_steps": feedback_steps, "benchmark": benchmark, "split": split,
                  "adapter": adapter, "n": ev.n, "temperature": ev.temperature, "seed": ev.seed,
                  "max_new_tokens": ev.max_new_tokens, "tasks": per_task,
                  "pass_at_k": overall_pass_at_k(flags, ev.ks),
                  "timings_s": timer.seconds, "wall_s": round(sum(timer.seconds.values()), 1)}
        record["programs_file"] = self._save_programs(key, programs)
        self.results["evaluations"] = [e for e in self.results["evaluations"] if e["key"] != key]
        self.results["evaluations"].append(record)
        log.info("%s: %s", key, record["pass_at_k"])
        return record

    def _save_programs(self, key: str, programs: list[dict[str, Any]]) -> str:
        """Write an evaluation's programs with their status and feedback to
        ``programs/<key>.jsonl`` (kept out of results.json): what a reader looks at to see why
        a figure moved. Returns the path relative to the results directory."""
        relative = Path("programs") / (key.replace("/", "--") + ".jsonl")
        (self.out_dir / relative.parent).mkdir(exist_ok=True)
        write_atomic(self.out_dir / relative, "".join(json.dumps(p) + "\n" for p in programs))
        return str(relative)

    # -- a LETI round ------------------------------------------------------------------------
    async def _round(self, number: int) -> None:
        cfg, store = self.config, self._s.store
        train_ids = (await anyio.to_thread.run_sync(state.task_ids, store, "train"))
        train_ids = train_ids[:cfg.data.train_problems]
        if not train_ids:
            raise StudyError("no MBPP train problems in the study's store")
        problems, _ = next_batch(train_ids, (number - 1) * cfg.loop.problems_per_round,
                                 cfg.loop.problems_per_round)
        generator = self._generation.generator
        sampled_from = generator.serving
        timer = Timer()
        began = time.perf_counter()
        sample_ids: list[str] = []
        for start in range(0, len(problems), SAMPLE_CHUNK):
            chunk = problems[start:start + SAMPLE_CHUNK]
            results = await self._generation.generate_batch([GenerationInput(
                task_id=task_id, n=cfg.sampling.n, temperature=cfg.sampling.temperature,
                max_new_tokens=cfg.sampling.max_new_tokens,
                seed=cfg.seed * 1_000_003 + number * 10_007 + start) for task_id in chunk])
            sample_ids += [g.sample.id for r in results for g in r.samples]
        began = timer.add("sampling", began)
        evaluated = await self._s.evaluator.evaluate(EvaluationInput(sample_ids=sample_ids))
        began = timer.add("execution", began)
        statuses = Counter(e.outcome.status.value for e in evaluated)
        error_types = Counter(e.outcome.error_type or "none" for e in evaluated
                              if not e.outcome.passed)
        log.info("round %d: %d programs, %d passed", number, len(evaluated),
                 statuses.get("passed", 0))

        steps = total_steps(cfg.training.feedback_steps, cfg.training.code_ratio)
        options = TrainOptions(objective="leti", learning_rate=cfg.training.learning_rate,
                               lora_rank=cfg.training.lora_rank, seed=cfg.seed + number)
        prepared = await anyio.to_thread.run_sync(
            lambda: prepare_run(store, self._s.settings, steps, options))
        name = await anyio.to_thread.run_sync(
            next_adapter_name, store, generator.alias, 0)
        adapter_dir, training = await self._train(prepared)
        await anyio.to_thread.run_sync(lambda: finish_run(
            store, prepared.run_id, adapter_name=name, adapter_dir=adapter_dir,
            base_model=self._s.settings.generator_model or "default",
            parent=prepared.parent_adapter, error=training.get("error")))
        began = timer.add("training", began)
        if adapter_dir is None:
            raise StudyError(f"round {number}: training failed: {training.get('error')} "
                             f"(log: {prepared.output_dir / 'trainer.log'})")

        await generator.load_adapter(name, str(adapter_dir))
        await self._evaluate("leti", number, "mbpp", name, cfg.training.feedback_steps)
        began = timer.add("evaluation", began)
        assert self.switch is not None
        decision = await self.switch.gate(name)
        timer.add("gate", began)
        metrics = decision.get("metrics") or {}
        self.results["rounds"] = [r for r in self.results["rounds"] if r["round"] != number]
        self.results["rounds"].append({
            "round": number, "problems": problems, "samples": len(evaluated),
            "passed": statuses.get("passed", 0), "statuses": dict(statuses),
            "error_types": dict(error_types), "adapter_sampled": sampled_from,
            "candidate": name, "adapter_dir": str(adapter_dir),
            "data": prepared.command[prepared.command.index("--data") + 1],
            "training": {**training, "steps": steps,
                         "feedback_steps": cfg.training.feedback_steps},
            "gate": {"decision": decision["decision"], "reason": decision.get("reason"),
                     "candidate_pass_at_1": metrics.get("candidate_pass_at_1"),
                     "serving_pass_at_1": metrics.get("serving_pass_at_1")},
            "serving_after": generator.serving, "timings_s": timer.seconds})

    async def _train(self, prepared: PreparedRun) -> tuple[Path | None, dict[str, Any]]:
        """Run the trainer process; the adapter (or None) and a summary of its metrics."""
        process = TrainerProcess(prepared)
        adapter_dir = await process.run()
        summary: dict[str, Any] = {"error": process.error}
        metrics_file = prepared.output_dir / "metrics.json"
        if adapter_dir is not None and metrics_file.is_file():
            metrics = json.loads(metrics_file.read_text(encoding="utf-8"))
            loss = (metrics.get("loss") or {}).get("feedback") or {}
            summary |= {"loss_first": loss.get("first"), "loss_last": loss.get("last"),
                        "tokens": metrics.get("tokens"),
                        "tokens_per_s": metrics.get("tokens_per_s")}
        return adapter_dir, summary

    # -- ablations ---------------------------------------------------------------------------
    async def _ablation(self, ablation: Ablation) -> None:
        """Round 1's data, the main arm's feedback steps, from the base model; one change."""
        cfg = self.config
        first = next(r for r in self.results["rounds"] if r["round"] == 1)
        code_ratio = cfg.training.code_ratio if ablation.code_ratio is None \
            else ablation.code_ratio
        steps = total_steps(cfg.training.feedback_steps, code_ratio)
        output = self._s.settings.adapters_dir / f"ablation-{ablation.name}"
        options = TrainOptions(objective=ablation.objective, code_ratio=code_ratio,
                               learning_rate=cfg.training.learning_rate,
                               lora_rank=cfg.training.lora_rank, seed=cfg.seed + 1)
        command = trainer_command(Path(first["data"]), output,
                                  base_model=self._s.settings.generator_model or "default",
                                  steps=steps, settings=self._s.settings, options=options)
        timer = Timer()
        began = time.perf_counter()
        adapter_dir, training = await self._train(PreparedRun(
            f"ablation-{ablation.name}", output, command, None,
            env=trainer_env(self._s.settings)))
        began = timer.add("training", began)
        if adapter_dir is None:
            raise StudyError(f"ablation {ablation.name}: training failed: "
                             f"{training.get('error')} (log: {output / 'trainer.log'})")
        generator = self._generation.generator
        name = f"ablation-{ablation.name}"
        await generator.load_adapter(name, str(adapter_dir))
        try:
            record = await self._evaluate(ablation.name, 1, "mbpp", name,
                                          cfg.training.feedback_steps)
        finally:
            await generator.unload_adapter(name)
        timer.add("evaluation", began)
        self.results["ablations"] = [a for a in self.results["ablations"]
                                     if a["name"] != ablation.name]
        self.results["ablations"].append({
            "name": ablation.name, "objective": ablation.objective, "code_ratio": code_ratio,
            "feedback_steps": cfg.training.feedback_steps, "steps": steps, "data_round": 1,
            "evaluation": record["key"], "compare_to": "leti-r1/mbpp",
            "training": {**training, "steps": steps}, "timings_s": timer.seconds})


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
