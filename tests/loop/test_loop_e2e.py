"""The whole loop over HTTP on the embedded model and the local sandbox: collect triples, train
a few steps in a real trainer process, gate, promote and serve the new adapter, roll back."""

from __future__ import annotations

import time

import pytest

from service.api.schemas import AdapterList, DecisionOut, LoopStatus, TrainingRunOut
from tests.loop.conftest import serve, wait_for

pytestmark = pytest.mark.slow


def test_loop_collects_trains_gates_promotes_serves_and_rolls_back(loop_settings) -> None:
    started = time.monotonic()
    with serve(loop_settings()) as server, server.client() as http:
        assert http.get("/v1/loop").json()["state"] == "stopped"
        assert http.post("/v1/loop/start").json()["state"] == "running"
        status = wait_for(http, "/v1/loop", lambda b: b["last_decisions"])
        LoopStatus.model_validate(status)  # typed answers, every key declared
        decision = status["last_decisions"][0]
        # A random model passes nothing: 0.0 vs 0.0 is within the margin, so it is promoted.
        assert decision["decision"] == "promote", decision
        assert decision["metrics"]["candidate_pass_at_1"] == 0.0
        assert decision["metrics"]["problems"] == ["builtin/21", "builtin/22", "builtin/23"]
        assert status["counts"]["triples"] >= 8 and status["task_source"] == "builtin"
        assert status["serving_adapter"] == "policy-v1"
        assert status["pass_at_1_history"][0]["adapter"] == "policy-v1"

        adapters = http.get("/v1/adapters").json()
        AdapterList.model_validate(adapters)
        assert adapters["serving"] == "policy-v1"
        newest = adapters["items"][0]
        assert newest["name"] == "policy-v1" and newest["state"] == "serving" and newest["loaded"]
        run = http.get(f"/v1/train/{newest['training_run']}").json()
        TrainingRunOut.model_validate(run)
        assert run["status"] == "done" and run["step"] == run["total_steps"] == 2
        assert run["adapter"] == "policy-v1" and run["loss"] is not None

        body = {"task_id": "builtin/1", "n": 1, "sampling": {"max_new_tokens": 8, "seed": 1}}
        generated = http.post("/v1/generate", json=body).json()
        assert generated["adapter"] == "policy-v1" and generated["conditioned_on"] == "good"

        back = http.post("/v1/adapters/rollback").json()
        DecisionOut.model_validate(back)
        assert back["decision"] == "rollback" and back["adapter"] == "policy-v1"
        assert http.get("/v1/adapters").json()["serving"] is None
        generated = http.post("/v1/generate", json=body).json()
        assert generated["adapter"] is None and generated["conditioned_on"] is None

        again = http.post("/v1/adapters/policy-v1/promote").json()
        assert DecisionOut.model_validate(again).decision == "promote"
        assert http.post("/v1/generate", json=body).json()["adapter"] == "policy-v1"
        stopped = http.post("/v1/loop/stop").json()
        assert LoopStatus.model_validate(stopped).state == "stopped"
    assert time.monotonic() - started < 300
