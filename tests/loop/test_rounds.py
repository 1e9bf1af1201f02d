"""The loop's round end to end with a scripted generator (it answers each built-in problem with
its reference solution when a "good" adapter serves, with a wrong program otherwise) over the
real store, sandbox, selection, trainer process (a tiny random model) and gate: a worse
candidate is refused through the loop and the serving adapter stays; and the loop goes through
the round functions the study calls."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from service.core.components import build_services
from service.core.generation import Generation
from service.generation.base import Generator
from service.generation.types import Completion, SamplingParams
from service.loop import rounds, state
from service.loop.builtin_tasks import builtin_tasks
from service.loop.controller import LoopController
from service.store import lineage
from service.store.models import AdapterRow, PromotionRow
from tests.loop.conftest import LOOP_TEST_SETTINGS

pytestmark = pytest.mark.slow


class ScriptedGenerator(Generator):
    """Solves every problem whose instruction is in the prompt when a "good" adapter samples;
    writes a program that fails its tests otherwise (the base model included)."""

    def __init__(self, good: set[str]) -> None:
        super().__init__()
        self.good = good
        self.references = {t.instruction: t.reference for t in builtin_tasks()}
        self.calls: list[str | None] = []

    def _check_adapter(self, path: str) -> None:  # any directory: nothing is really loaded
        pass

    async def _load(self, name: str, path: str) -> None:
        pass

    async def _unload(self, name: str) -> None:
        pass

    async def _generate(self, prompts: list[str], params: SamplingParams,
                        adapter: str | None) -> list[list[Completion]]:
        self.calls.append(adapter)
        out = []
        for prompt in prompts:
            reference = next(r for i, r in self.references.items() if i in prompt)
            program = reference if adapter in self.good else "def nothing():\n    return None"
            text = f"```python\n{program}\n```"
            out.append([Completion(text, 10, 20, "stop", adapter) for _ in range(params.n)])
        return out


async def _loop_with(tmp_path: Path, tiny_model_dir: Path, **overrides: Any):  # type: ignore[no-untyped-def]
    from service.core.config import Settings

    settings = Settings(_env_file=None, **{  # type: ignore[call-arg]
        **LOOP_TEST_SETTINGS, "generator_backend": "none", "data_dir": tmp_path / "data",
        "generator_model": str(tiny_model_dir), "train_min_new_triples": 4,
        "gate_problems": 10, "train_truncated": "drop", **overrides})
    services = await build_services(settings)
    generator = ScriptedGenerator(good={"policy-v1"})
    services.generation = Generation(generator, None, services.store, services.evaluator,
                                     settings, services.metrics)
    controller = LoopController(settings, services.store, services.sandbox, services.generation)
    await controller.tasks_ready()
    return services, generator, controller


def _serve_v1(services: Any, generator: ScriptedGenerator, tmp_path: Path) -> None:
    """policy-v1 serves (recorded in the store and loaded in the generator)."""
    (tmp_path / "v1").mkdir()
    with services.store.write() as session:
        lineage.register_adapter(session, name="policy-v1", path=str(tmp_path / "v1"),
                                 base_model="m", parent_id=None)
        lineage.decide(session, "policy-v1", "promote", "set up by the test", None)


def test_a_worse_candidate_is_refused_through_the_loop_and_the_serving_adapter_stays(
        tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: dict[str, int] = {"collect_round": 0, "train_and_gate": 0}
    for name in calls:  # the loop runs the same round functions the study runs
        real = getattr(rounds, name)

        def spy(*args: Any, _real: Any = real, _name: str = name, **kwargs: Any) -> Any:
            calls[_name] += 1
            return _real(*args, **kwargs)
        monkeypatch.setattr(rounds, name, spy)

    async def scenario() -> dict[str, Any]:
        services, generator, controller = await _loop_with(tmp_path, tiny_model_dir)
        try:
            _serve_v1(services, generator, tmp_path)
            await controller.startup()  # restores policy-v1 into the generator
            assert generator.serving == "policy-v1"
            await controller.start()
            deadline = time.monotonic() + 240
            while time.monotonic() < deadline:
                decisions = [d for d in state.decisions(services.store)
                             if d["decision"] != "promote" or d["adapter"] != "policy-v1"]
                if decisions:
                    break
                await asyncio.sleep(0.5)
            await controller.stop()
            await controller.close()
            with services.store.read() as session:
                rows = {r.id: r.state for r in session.query(AdapterRow).all()}
                gate_rows = session.query(PromotionRow).count()
            return {"decision": decisions[0], "serving": generator.serving, "rows": rows,
                    "gates": gate_rows, "status": await controller.status(),
                    "loaded": {a.name for a in generator.list_adapters() if not a.retiring}}
        finally:
            await services.close()

    result = asyncio.run(scenario())
    decision = result["decision"]
    assert decision["decision"] == "reject" and decision["adapter"] == "policy-v2", decision
    assert "solves fewer problems" in decision["reason"]
    metrics = decision["metrics"]
    assert (metrics["serving_solved"], metrics["candidate_solved"], metrics["tasks"]) == \
        (10, 0, 10)
    assert metrics["serving"] == "policy-v1" and len(metrics["lost"]) == 10
    assert metrics["table"]["builtin/21"] == [1, 0]
    assert metrics["warning"] is not None  # 10 problems cannot see a 5-point drop
    assert result["serving"] == "policy-v1"  # the serving adapter is unchanged
    # (the loop goes on: a next run may have started before it was stopped)
    assert (result["rows"]["policy-v1"], result["rows"]["policy-v2"]) == ("serving", "rejected")
    assert "policy-v2" not in result["loaded"]
    assert result["status"]["serving_adapter"] == "policy-v1"
    assert calls["collect_round"] >= 1 and calls["train_and_gate"] >= 1
    assert result["status"]["counts"]["training_runs"] >= 1


def test_a_round_run_to_the_end_promotes_a_candidate_that_is_not_worse(
        tmp_path: Path, tiny_model_dir: Path) -> None:
    """``run_round`` without ``launch`` (as the study runs it): collect, select, train, measure
    before the gate, gate; the good candidate solves as many and is swapped in."""
    async def scenario() -> tuple[rounds.RoundOutcome, list[str], str | None]:
        services, generator, controller = await _loop_with(tmp_path, tiny_model_dir)
        try:
            _serve_v1(services, generator, tmp_path)
            await controller.startup()
            generator.good.add("policy-v2")
            measured: list[str] = []

            async def before_gate(name: str, adapter_dir: Path) -> None:
                assert (adapter_dir / "adapter_model.safetensors").is_file()
                measured.append(name)

            problems = state.task_ids(services.store, "train")[:2]
            outcome = await rounds.run_round(
                controller._context(services.generation),
                rounds.RoundPlan(1, problems, 2, 0.8, 24, seed=7), before_gate=before_gate)
            await controller.close()
            return outcome, measured, generator.serving
        finally:
            await services.close()

    outcome, measured, serving = asyncio.run(scenario())
    assert outcome.collected.samples == 4 and outcome.collected.passed == 4
    assert outcome.collected.pass_rate == 1.0 and outcome.collected.statuses == {"passed": 4}
    trained = outcome.trained
    assert trained is not None and trained.error is None and measured == ["policy-v2"]
    assert trained.data["selection"]["passing"]["kept"] == 2  # 2 problems x 2 same programs
    assert trained.data["selection"]["passing"]["duplicates"] == 2
    assert trained.decision is not None and trained.decision["decision"] == "promote"
    assert serving == "policy-v2"
    assert set(trained.timings_s) == {"training", "gate"}
    assert trained.training["steps"] >= 1


def test_a_round_over_the_per_request_program_cap_is_evaluated_whole(
        tmp_path: Path, tiny_model_dir: Path) -> None:
    """3 problems x 4 samples = 12 programs with LETI_MAX_PROGRAMS = 5: the round's own
    evaluation goes in requests within the cap instead of failing with LimitExceeded."""
    async def scenario() -> rounds.RoundResult:
        services, _, controller = await _loop_with(tmp_path, tiny_model_dir, max_programs=5)
        try:
            problems = state.task_ids(services.store, "train")[:3]
            result = await rounds.collect_round(
                services.generation, rounds.RoundPlan(1, problems, 4, 0.8, 24, seed=7))
            await controller.close()
            return result
        finally:
            await services.close()

    result = asyncio.run(scenario())
    assert result.samples == 12 and result.statuses == {"error": 12}  # all 12 ran (NameError)
