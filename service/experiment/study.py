"""One study, run through the service's own components: the store, sandbox and generator that
``leti serve`` builds, the loop's round, trainer process and promotion gate, and the
benchmark sampler and scorer.

Phases, in order, each saved to ``results.json`` when it ends (a re-run with ``resume``
skips the phases already there):

1. ``baseline``: MBPP test and HumanEval pass@k of the base model.
2. ``round-N`` (N = 1..rounds), the LETI arm: the loop's own round (``service.loop.rounds``,
   the code ``leti serve`` runs): sample ``n`` programs for the round's problems of the fixed
   train pool from the serving model, execute them, select the training data (every passing
   program so far and the round's failures), train a LoRA adapter sized by that data, measure
   the candidate on MBPP test (before the gate), and gate it on MBPP validation with the
   paired decision (promoted: it serves the next round; rejected: the serving adapter stays).
3. ``ablation-<name>`` (after round 1): the same round-1 data and training length from the base
   model, with another objective (binary feedback) or code ratio (no code corpus).
4. ``final``: HumanEval of the last promoted adapter (the serving one), and with
   ``loop.marker_check`` its MBPP test pass@1 conditioned on "Reward: bad", against "good".
"""

from __future__ import annotations

import json
import logging
import os
import platform
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from importlib import metadata
from pathlib import Path
from typing import Any

import anyio.to_thread

from service.benchmarks.jobs import BenchmarkSpec, load_bench_tasks, sample_programs
from service.benchmarks.scoring import HUMAN_EVAL_TIMEOUT_S, overall_pass_at_k, score_samples
from service.core.components import Services, build_services
from service.core.config import Settings
from service.core.generation import BASE, Generation
from service.core.machine import cpu_model
from service.experiment.config import Ablation, ExperimentConfig
from service.experiment.report import write_atomic
from service.loop import state
from service.loop.adapters import AdapterSwitch
from service.loop.rounds import (
    RoundContext,
    RoundPlan,
    next_batch,
    pool,
    run_round,
    training_summary,
)
from service.loop.training import (
    PreparedRun,
    TrainerProcess,
    TrainOptions,
    trainer_command,
    trainer_env,
)
from trainer.batches import total_steps

log = logging.getLogger(__name__)
SCHEMA = 2


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


def environment() -> dict[str, Any]:
    """The machine and library versions a figure was measured with."""
    cpu = cpu_model()
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
        self.services = await build_services(settings)
        try:
            if self._s.generation is None:
                raise StudyError(f"no generator: {self._s.generator_problem}")
            # The dtype, device and decode path "auto" resolved to: every figure depends on them.
            self.results["environment"]["generator"] = self._s.generation.generator.describe()
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
        await services.close()

    async def _baseline(self) -> None:
        await self._evaluate("base", 0, "mbpp", None, 0)
        if self.config.data.humaneval_problems > 0:
            await self._evaluate("base", 0, "humaneval", None, 0)

    async def _final(self) -> None:
        """HumanEval of the last promoted adapter (what serves at the end), and the marker
        check: its MBPP test pass@1 sampled on "Reward: bad" against its figure on "good"."""
        promoted = [r for r in self.results["rounds"]
                    if (r.get("gate") or {}).get("decision") == "promote"]
        if not promoted:
            log.info("final: no round was promoted; the base model still serves")
            return
        last = promoted[-1]
        name = last["candidate"]
        await self._ensure_loaded(name, last["adapter_dir"])
        steps = (last.get("training") or {}).get("feedback_steps")
        if self.config.data.humaneval_problems > 0:
            await self._evaluate("leti", last["round"], "humaneval", name, steps)
        if self.config.loop.marker_check:
            record = await self._evaluate("bad", last["round"], "mbpp", name, steps,
                                          marker="bad")
            self.results["ablations"] = [a for a in self.results["ablations"]
                                         if a["name"] != "marker"]
            self.results["ablations"].append({
                "name": "marker", "objective": None, "marker": "bad",
                "evaluation": record["key"], "compare_to": f"leti-r{last['round']}/mbpp",
                "data_round": last["round"], "training": {}, "timings_s": record["timings_s"]})

    async def _ensure_loaded(self, name: str, path: str) -> None:
        generator = self._generation.generator
        loaded = {a.name for a in generator.list_adapters() if not a.retiring}
        if name not in loaded:  # rejected (unloaded), or a resumed study
            assert self.switch is not None
            await self.switch.wait()
            await generator.load_adapter(name, path)

    # -- evaluation --------------------------------------------------------------------------
    async def _evaluate(self, arm: str, round_number: int, benchmark: str, adapter: str | None,
                        feedback_steps: int | None, marker: str | None = None
                        ) -> dict[str, Any]:
        """pass@k of ``adapter`` (None: the base model) on the benchmark's first problems,
        stored in the results under ``<arm>[-rN]/<benchmark>``; ``marker="bad"`` samples on
        the "bad" reward marker instead of "good" (LETI's check that the marker was learned)."""
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
        per_call = self._generation.generator.prompts_per_call(ev.n)
        for start in range(0, len(tasks), per_call):
            chunk = tasks[start:start + per_call]
            began = time.perf_counter()
            samples, _ = await sample_programs(spec, self._generation, chunk,
                                               marker or "good")
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
        record = {"key": key, "arm": arm, "round": round_number, "marker": marker,
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

    # -- a LETI round: the loop's round -------------------------------------------------------
    async def _round(self, number: int) -> None:
        cfg, store = self.config, self._s.store
        train_ids = pool(await anyio.to_thread.run_sync(state.task_ids, store, "train"),
                         cfg.data.train_problems)
        if not train_ids:
            raise StudyError("no MBPP train problems in the study's store")
        problems, _ = next_batch(train_ids, (number - 1) * cfg.loop.problems_per_round,
                                 cfg.loop.problems_per_round)
        generator = self._generation.generator
        sampled_from = generator.serving
        plan = RoundPlan(number, problems, cfg.sampling.n, cfg.sampling.temperature,
                         cfg.sampling.max_new_tokens, seed=cfg.seed * 1_000_003 + number * 10_007,
                         repetition_penalty=cfg.sampling.repetition_penalty)
        options = TrainOptions(objective="leti", learning_rate=cfg.training.learning_rate,
                               lora_rank=cfg.training.lora_rank, seed=cfg.seed + number)
        evaluation_s: dict[str, float] = {}

        async def measure(name: str, adapter_dir: Path) -> None:
            """The candidate's MBPP test pass@1, before the gate decides."""
            began = time.perf_counter()
            await generator.load_adapter(name, str(adapter_dir))
            steps = training_summary(adapter_dir.parent).get("feedback_steps")
            await self._evaluate("leti", number, "mbpp", name, steps)
            evaluation_s["evaluation"] = round(time.perf_counter() - began, 3)

        assert self.switch is not None
        context = RoundContext(store, self._s.settings, self._generation, self.switch)
        outcome = await run_round(context, plan, options=options, before_gate=measure)
        collected, trained, prepared = outcome.collected, outcome.trained, outcome.prepared
        assert trained is not None and prepared is not None
        if trained.error is not None or trained.adapter_dir is None:
            raise StudyError(f"round {number}: training failed: {trained.error} "
                             f"(log: {prepared.output_dir / 'trainer.log'})")
        decision = trained.decision or {}
        metrics = decision.get("metrics") or {}
        self.results["rounds"] = [r for r in self.results["rounds"] if r["round"] != number]
        self.results["rounds"].append({
            "round": number, "problems": problems, "pool": len(train_ids),
            "samples": collected.samples, "passed": collected.passed,
            "pool_pass_rate": collected.pass_rate, "truncated": collected.truncated,
            "statuses": collected.statuses, "error_types": collected.error_types,
            "adapter_sampled": sampled_from, "candidate": trained.candidate,
            "adapter_dir": str(trained.adapter_dir),
            "data": prepared.command[prepared.command.index("--data") + 1],
            "selection": trained.data.get("selection"),
            "trained_on": trained.data.get("trained_on"),
            "training": {**trained.training, "error": None,
                         "step_bound": cfg.training.step_bound(),
                         "init": cfg.training.init},
            "gate": {"decision": decision.get("decision"), "reason": decision.get("reason"),
                     **{k: metrics.get(k) for k in (
                         "candidate_pass_at_1", "serving_pass_at_1", "candidate_solved",
                         "serving_solved", "tasks", "difference", "ci_low", "ci_high",
                         "warning", "gained", "lost")}},
            "serving_after": generator.serving,
            "timings_s": {**collected.timings_s, **trained.timings_s, **evaluation_s}})

    async def _train(self, prepared: PreparedRun) -> tuple[Path | None, dict[str, Any]]:
        """Run the trainer process; the adapter (or None) and a summary of its metrics."""
        process = TrainerProcess(prepared)
        adapter_dir = await process.run()
        summary: dict[str, Any] = {"error": process.error}
        if adapter_dir is not None:
            summary |= training_summary(prepared.output_dir)
        return adapter_dir, summary

    # -- ablations ---------------------------------------------------------------------------
    async def _ablation(self, ablation: Ablation) -> None:
        """Round 1's data and the main arm's feedback steps (the same data and epochs, bounded
        by the steps round 1 took), from the base model; one change."""
        cfg = self.config
        first = next(r for r in self.results["rounds"] if r["round"] == 1)
        code_ratio = cfg.training.code_ratio if ablation.code_ratio is None \
            else ablation.code_ratio
        feedback_steps = int(first["training"]["feedback_steps"])
        steps = total_steps(feedback_steps, code_ratio)
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
            record = await self._evaluate(ablation.name, 1, "mbpp", name, feedback_steps)
        finally:
            await generator.unload_adapter(name)
        timer.add("evaluation", began)
        self.results["ablations"] = [a for a in self.results["ablations"]
                                     if a["name"] != ablation.name]
        self.results["ablations"].append({
            "name": ablation.name, "objective": ablation.objective, "code_ratio": code_ratio,
            "feedback_steps": feedback_steps, "steps": steps, "data_round": 1,
            "evaluation": record["key"], "compare_to": "leti-r1/mbpp",
            "training": {**training, "steps": steps}, "timings_s": timer.seconds})


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
