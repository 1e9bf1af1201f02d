"""A study's progress on disk: ``results.json`` started or resumed, and each phase saved to it
when it ends, so a run that stops (a crash, ``--stop-after``) resumes after its last finished
phase from the same output directory."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from service.experiment.config import ExperimentConfig
from service.experiment.environment import environment, now
from service.experiment.results import SCHEMA, StudyResults, load_results, save_results

log = logging.getLogger(__name__)


class StudyError(RuntimeError):
    """The study cannot go on (no generator, no tasks); the message says what to fix."""


def _same_config(stored: dict[str, Any], config: ExperimentConfig) -> bool:
    """Whether a results file was made with ``config``: read through today's model, so a
    setting added since (with its default) does not make an old run another config."""
    try:
        return ExperimentConfig.model_validate(stored) == config
    except ValueError:  # pydantic's ValidationError: not even a config today
        return False


def phase_names(config: ExperimentConfig) -> list[str]:
    """Every phase of this config, in the order they run."""
    names = ["baseline"]
    for number in range(1, config.loop.rounds + 1):
        names.append(f"round-{number}")
        if number == 1:
            names += [f"ablation-{a.name}" for a in config.ablations]
    return [*names, "final"]


class Progress:
    """The results of one study in ``out_dir/results.json`` and the phases already done."""

    def __init__(self, config: ExperimentConfig, out_dir: Path, *, resume: bool,
                 on_phase: Callable[[StudyResults], object] | None,
                 stop_after: str | None) -> None:
        self.config = config
        self.results_path = out_dir / "results.json"
        self.resume = resume
        self.on_phase = on_phase  # called with the results after each phase (the report)
        self.stop_after = stop_after  # a phase name: end the run there (a partial repeat)
        self.results = StudyResults()
        self._stopped = False

    def start(self) -> StudyResults:
        """Resume the results in the output directory, or begin new ones. A file made with
        another config is refused: its phases would not be this config's."""
        if self.resume and self.results_path.is_file():
            previous = load_results(self.results_path)
            if not _same_config(previous.config, self.config):
                raise StudyError(f"{self.results_path} was made with another config: use a new "
                                 "--output directory or --fresh")
            self.results = previous
        else:
            self.results = StudyResults(schema=SCHEMA, name=self.config.name,
                                        config=self.config.model_dump(mode="json"),
                                        environment=environment())
        return self.results

    def save(self) -> None:
        """Write results.json, then the report (whose failure must not lose a finished phase)."""
        save_results(self.results_path, self.results)
        if self.on_phase is not None:
            try:
                self.on_phase(self.results)
            except Exception:  # a broken plot must not lose a finished phase
                log.exception("writing the report failed")

    async def phase(self, name: str, body: Callable[[], Awaitable[None]]) -> None:
        """Run one phase unless an earlier run finished it or the run stopped before it; save
        the results when it ends."""
        if self._stopped:
            return
        if name == self.stop_after:
            self._stopped = True
        if name in self.results.phases_done:
            log.info("phase %s: done in an earlier run, skipped", name)
            return
        log.info("phase %s: starting", name)
        started = time.perf_counter()
        await body()
        self.results.phases_done.append(name)
        env = self.results.environment
        env.wall_s = round((env.wall_s or 0.0) + time.perf_counter() - started, 1)
        self.save()
        log.info("phase %s: done in %.0f s", name, time.perf_counter() - started)

    def finish(self) -> None:
        """Stamp the end time once the last phase is done (a partial run stays unfinished)."""
        if "final" in self.results.phases_done:
            self.results.environment.finished_at = now()
            self.save()
