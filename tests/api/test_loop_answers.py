"""The loop's, training runs' and adapters' answers are typed (``service/api/schemas/``): each
route's answer, over a store holding adapters, runs and decisions, validates against its model
and carries every key and value the code returns (tests/api/test_fuzz.py checks that the OpenAPI
schema names the models). No generator here: what needs one (start, train, promote, rollback)
answers 503; its typed answer is checked over HTTP in tests/loop/test_loop_e2e.py."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.api.schemas import AdapterList, DecisionOut, LoopStatus, TrainingRunOut
from service.loop import state
from service.loop.training import run_progress
from service.store import lineage
from service.store.db import Store

GATE = {"candidate_pass_at_1": 0.5, "serving_pass_at_1": 0.25, "tasks": 4,
        "table": {"builtin/21": [1, 0]}, "problems": ["builtin/21"]}


def _store(client: TestClient) -> Store:
    return client.app.state.services.store  # type: ignore[attr-defined]


def _as_json(value: Any) -> Any:
    return json.loads(json.dumps(value))


@pytest.fixture(scope="module")
def seeded(client: TestClient, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Two runs (one done with policy-v1, promoted; one failed), policy-v2 rejected, and a run
    in progress whose trainer has written step events."""
    out = tmp_path_factory.mktemp("run")
    (out / "events.jsonl").write_text("\n".join([
        json.dumps({"event": "start", "total_steps": 4}),
        json.dumps({"event": "step", "step": 2, "total_steps": 4, "loss": 1.5}),
        "not json"]) + "\n", encoding="utf-8")
    with _store(client).write() as session:
        def run(config: dict[str, Any]) -> str:
            return lineage.start_training_run(
                session, parent_adapter_id=None, data_path="/data/t.jsonl", data_sha256="0" * 64,
                triples_from=1, triples_to=8, config=config).id

        done, failed, running = run({"steps": 2}), run({"steps": 3}), \
            run({"steps": 4, "output_dir": str(out)})
        v1 = lineage.register_adapter(session, name="policy-v1", path="/a/v1",
                                      base_model="default", parent_id=None,
                                      metrics={"training": {"steps": 2}})
        lineage.finish_training_run(session, done, adapter=v1, metrics={"loss": 1.0})
        lineage.finish_training_run(session, failed, adapter=None, metrics=None,
                                    error="the trainer exited with code -9")
        promoted = lineage.decide(session, "policy-v1", "promote", "not worse", GATE)
        promoted_json = state.decision_json(promoted)
        lineage.register_adapter(session, name="policy-v2", path="/a/v2", base_model="default",
                                 parent_id="policy-v1")
        lineage.decide(session, "policy-v2", "reject", "worse", {**GATE,
                                                                 "candidate_pass_at_1": 0.0})
    return {"done": done, "failed": failed, "running": running, "promoted": promoted_json}


def test_the_loop_status_is_typed(client: TestClient, seeded: dict[str, Any]) -> None:
    answer = client.get("/v1/loop")
    assert answer.status_code == 200, answer.text
    status = LoopStatus.model_validate(answer.json())
    assert status.state == "stopped" and status.phase == "idle" and status.training is None
    assert [d.decision for d in status.last_decisions] == ["reject", "promote"]
    assert [p.pass_at_1 for p in status.pass_at_1_history] == [0.5, 0.0]
    assert status.counts.adapters == 2 and status.counts.failed_runs == 1
    # the model keeps every key and value the controller returns: the JSON loses nothing
    loop = client.app.state.loop  # type: ignore[attr-defined]
    assert answer.json() == _as_json(client.portal.call(loop.status))  # type: ignore[union-attr]

    stopped = client.post("/v1/loop/stop")
    assert stopped.status_code == 200 and LoopStatus.model_validate(stopped.json()).state == \
        "stopped"
    started = client.post("/v1/loop/start")
    assert started.status_code == 503 and started.json()["component"] == "generator"


def test_training_runs_are_typed(client: TestClient, seeded: dict[str, Any]) -> None:
    done = TrainingRunOut.model_validate(client.get(f"/v1/train/{seeded['done']}").json())
    assert (done.status, done.adapter, done.triples, done.step, done.total_steps, done.loss) == \
        ("done", "policy-v1", (1, 8), 0, 2, None)
    assert done.finished_at is not None and done.metrics == {"loss": 1.0}
    failed = TrainingRunOut.model_validate(client.get(f"/v1/train/{seeded['failed']}").json())
    assert failed.status == "failed" and failed.error and failed.adapter is None
    answer = client.get(f"/v1/train/{seeded['running']}").json()
    running = TrainingRunOut.model_validate(answer)
    assert (running.status, running.step, running.total_steps, running.loss) == \
        ("running", 2, 4, 1.5)
    assert running.finished_at is None and answer["triples"] == [1, 8]
    assert answer == _as_json(run_progress(_store(client), seeded["running"]))
    assert client.get("/v1/train/nope").status_code == 404
    started = client.post("/v1/train")
    assert started.status_code == 503 and started.json()["component"] == "generator"


def test_adapters_and_decisions_are_typed(client: TestClient, seeded: dict[str, Any]) -> None:
    answer = client.get("/v1/adapters")
    assert answer.status_code == 200, answer.text
    listed = AdapterList.model_validate(answer.json())
    assert listed.alias is None and listed.serving is None  # no generator: nothing serves
    assert [(a.name, a.state, a.parent, a.training_run, a.loaded) for a in listed.items] == [
        ("policy-v2", "rejected", "policy-v1", None, False),
        ("policy-v1", "serving", None, seeded["done"], False)]
    assert answer.json()["items"] == _as_json(state.adapters(_store(client), set()))
    # promote and rollback answer the recorded decision (served through a generator: 503 here)
    decision = DecisionOut.model_validate(seeded["promoted"])
    assert decision.decision == "promote" and decision.metrics == GATE
    assert client.post("/v1/adapters/policy-v1/promote").status_code == 503
    assert client.post("/v1/adapters/rollback").status_code == 503
