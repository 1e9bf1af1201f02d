"""One study, run through the service's own components: the store, sandbox and generator that
``leti serve`` builds, the loop's round, trainer process and promotion gate, and the
benchmark sampler and scorer.

Phases, in order, each saved to ``results.json`` when it ends (a re-run with ``resume``
skips the phases already there; ``progress``):

1. ``baseline``: MBPP test and HumanEval pass@k of the base model.
2. ``round-N`` (N = 1..rounds), the LETI arm: the loop's own round (``service.loop.rounds``,
   the code ``leti serve`` runs): sample ``n`` programs for the round's problems of the fixed
   train pool from the serving model, execute them, select the training data (every passing
   program so far and the round's failures), train a LoRA adapter sized by that data, measure
   the candidate on MBPP test (before the gate), and gate it on MBPP validation with the
   paired decision (promoted: it serves the next round; rejected: the serving adapter stays).
3. ``ablation-<name>`` (after round 1): the same round-1 data and training length from the base
   model, with another objective (binary feedback) or code ratio (no code corpus); or the same
   training length on the pool's reference solutions (``references``: a ceiling).
4. ``final``: HumanEval of the last promoted adapter (the serving one), and with
   ``loop.marker_check`` its MBPP test pass@1 conditioned on "Reward: bad", against "good".
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import anyio.to_thread

from service.core.components import Services, build_services
from service.core.generation import Generation
from service.experiment.bookkeeping import ablation_record, marker_record, round_record
from service.experiment.config import Ablation, ExperimentConfig
from service.experiment.environment import settings_for
from service.experiment.evaluation import Evaluator, Timer
from service.experiment.progress import Progress, StudyError, phase_names
from service.experiment.references import reference_data
from service.experiment.results import EvaluationRecord, StudyResults
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

__all__ = ["Study", "StudyError"]


class Study:
    """Runs the phases of one config into ``out_dir`` (``results.json``, ``state/``)."""

    def __init__(self, config: ExperimentConfig, out_dir: Path, *, resume: bool = True,
                 on_phase: Callable[[StudyResults], object] | None = None,
                 stop_after: str | None = None) -> None:
        self.config = config
        self.out_dir = out_dir
        self.progress = Progress(config, out_dir, resume=resume, on_phase=on_phase,
                                 stop_after=stop_after)
        self.services: Services | None = None
        self.switch: AdapterSwitch | None = None

    @property
    def results(self) -> StudyResults:
        return self.progress.results

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
    async def run(self) -> StudyResults:
        """Run every phase not done yet; returns the results (also in ``results.json``)."""
        stop_after = self.progress.stop_after
        if stop_after is not None and stop_after not in phase_names(self.config):
            raise StudyError(f"no phase {stop_after!r}: this config has "
                             f"{', '.join(phase_names(self.config))}")
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.progress.start()
        state_dir = self.out_dir / "state"
        state_dir.mkdir(exist_ok=True)
        settings = settings_for(self.config, state_dir)
        self.services = await build_services(settings)
        try:
            if self._s.generation is None:
                raise StudyError(f"no generator: {self._s.generator_problem}")
            # The dtype, device and decode path "auto" resolved to: every figure depends on them.
            self.results.environment.generator = self._s.generation.generator.describe()
            self.switch = AdapterSwitch(settings, self._s.store, self._s.sandbox,
                                        self._s.generation)
            await self.switch.restore_serving()
            await self._phases()
        finally:
            await self._close()
        return self.results

    async def _phases(self) -> None:
        phase = self.progress.phase
        await phase("baseline", self._baseline)
        for number in range(1, self.config.loop.rounds + 1):
            await phase(f"round-{number}", partial(self._round, number))
            if number == 1:
                for ablation in self.config.ablations:
                    await phase(f"ablation-{ablation.name}", partial(self._ablation, ablation))
        await phase("final", self._final)
        self.progress.finish()

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
        promoted = [r for r in self.results.rounds if r.gate.decision == "promote"]
        if not promoted:
            log.info("final: no round was promoted; the base model still serves")
            return
        last = promoted[-1]
        name = last.candidate
        assert name is not None and last.adapter_dir is not None
        await self._ensure_loaded(name, last.adapter_dir)
        steps = last.training.feedback_steps
        if self.config.data.humaneval_problems > 0:
            await self._evaluate("leti", last.round, "humaneval", name, steps)
        if self.config.loop.marker_check:
            record = await self._evaluate("bad", last.round, "mbpp", name, steps, marker="bad")
            self.results.put_ablation(marker_record(record, last.round))

    async def _ensure_loaded(self, name: str, path: str) -> None:
        generator = self._generation.generator
        loaded = {a.name for a in generator.list_adapters() if not a.retiring}
        if name not in loaded:  # rejected (unloaded), or a resumed study
            assert self.switch is not None
            await self.switch.wait()
            await generator.load_adapter(name, path)

    async def _evaluate(self, arm: str, round_number: int, benchmark: str, adapter: str | None,
                        feedback_steps: int | None, marker: str | None = None
                        ) -> EvaluationRecord:
        """Evaluate (``Evaluator.evaluate``) and record the evaluation in the results."""
        evaluator = Evaluator(self.config, self._s, self._generation, self.out_dir)
        record = await evaluator.evaluate(arm, round_number, benchmark, adapter, feedback_steps,
                                          marker)
        self.results.put_evaluation(record)
        return record

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
        trained, prepared = outcome.trained, outcome.prepared
        assert trained is not None and prepared is not None
        if trained.error is not None or trained.adapter_dir is None:
            raise StudyError(f"round {number}: training failed: {trained.error} "
                             f"(log: {prepared.output_dir / 'trainer.log'})")
        self.results.put_round(round_record(
            outcome, pool_size=len(train_ids), sampled_from=sampled_from,
            serving_after=generator.serving, training=cfg.training, evaluation_s=evaluation_s))

    # -- ablations ---------------------------------------------------------------------------
    async def _ablation(self, ablation: Ablation) -> None:
        """Round 1's data and the main arm's feedback steps (the same data and epochs, bounded
        by the steps round 1 took), from the base model; one change."""
        cfg = self.config
        first = next(r for r in self.results.rounds if r.round == 1)
        if first.data is None or first.training.feedback_steps is None:
            raise StudyError("round 1's record has no training data or feedback steps to repeat")
        code_ratio = cfg.training.code_ratio if ablation.code_ratio is None \
            else ablation.code_ratio
        feedback_steps = int(first.training.feedback_steps)
        steps = total_steps(feedback_steps, code_ratio)
        name = f"ablation-{ablation.name}"
        output = self._s.settings.adapters_dir / name
        options = TrainOptions(objective=ablation.objective, code_ratio=code_ratio,
                               learning_rate=cfg.training.learning_rate,
                               lora_rank=cfg.training.lora_rank, seed=cfg.seed + 1)
        data, reference_counts = Path(first.data), None
        if ablation.data == "references":
            data, reference_counts = await self._references(first.problems, output)
        command = trainer_command(data, output,
                                  base_model=self._s.settings.generator_model or "default",
                                  steps=steps, settings=self._s.settings, options=options)
        timer = Timer()
        began = time.perf_counter()
        adapter_dir, training = await self._train(PreparedRun(
            name, output, command, None, env=trainer_env(self._s.settings)))
        began = timer.add("training", began)
        if adapter_dir is None:
            raise StudyError(f"ablation {ablation.name}: training failed: "
                             f"{training.get('error')} (log: {output / 'trainer.log'})")
        generator = self._generation.generator
        await generator.load_adapter(name, str(adapter_dir))
        try:
            record = await self._evaluate(ablation.name, 1, "mbpp", name, feedback_steps)
        finally:
            await generator.unload_adapter(name)
        timer.add("evaluation", began)
        self.results.put_ablation(ablation_record(
            ablation, code_ratio=code_ratio, feedback_steps=feedback_steps, steps=steps,
            evaluation=record, training=training, timings_s=timer.seconds,
            references=reference_counts))

    async def _references(self, problems: list[str], output: Path
                          ) -> tuple[Path, dict[str, Any]]:
        """The pool's passing reference solutions as training data (``references``)."""
        settings = self._s.settings
        made = await reference_data(self._s.store, self._s.sandbox, problems,
                                    output.parent / f"{output.name}.jsonl",
                                    timeout=self.config.sandbox.timeout_s,
                                    memory_mb=settings.sandbox_memory_mb)
        log.info("references: %d of %d problems' references pass", made.kept, made.problems)
        if not made.kept:
            raise StudyError(f"references: none of the {made.problems} references passed")
        return made.path, {"problems": made.problems, "kept": made.kept, "failed": made.failed}

    async def _train(self, prepared: PreparedRun) -> tuple[Path | None, dict[str, Any]]:
        """Run the trainer process; the adapter (or None) and a summary of its metrics."""
        process = TrainerProcess(prepared)
        adapter_dir = await process.run()
        summary: dict[str, Any] = {"error": process.error}
        if adapter_dir is not None:
            summary |= training_summary(prepared.output_dir)
        return adapter_dir, summary
