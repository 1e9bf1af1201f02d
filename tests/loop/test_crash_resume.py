"""A trainer killed mid-run is recorded failed while the old adapter keeps serving; a restarted
service resumes the loop (round, task cursor, serving adapter) and fails runs it interrupted."""

from __future__ import annotations

import os
import signal

import pytest

from tests.loop.conftest import serve, wait_for

pytestmark = pytest.mark.slow
GEN = {"task_id": "builtin/2", "n": 1, "sampling": {"max_new_tokens": 8, "seed": 3}}


def _promoted(status: dict) -> bool:
    return any(d["decision"] == "promote" for d in status["last_decisions"])


def test_killed_trainer_keeps_serving_and_restart_resumes(loop_settings) -> None:
    settings = loop_settings(loop_enabled=True, train_min_new_triples=1_000_000)
    with serve(settings) as server, server.client() as http:
        assert http.get("/v1/loop").json()["state"] == "running"  # LETI_LOOP_ENABLED
        wait_for(http, "/v1/loop", lambda b: b["counts"]["triples"] >= 4)
        first = http.post("/v1/train", json={"steps": 2}).json()["id"]
        wait_for(http, "/v1/loop", _promoted)
        assert http.get(f"/v1/train/{first}").json()["status"] == "done"

        wait_for(http, "/v1/loop", lambda b: b["counts"]["new_triples"] > 0)
        run = http.post("/v1/train", json={"steps": 100_000}).json()["id"]
        assert http.post("/v1/train").status_code == 409  # one run at a time
        wait_for(http, f"/v1/train/{run}", lambda b: b["step"] >= 1)
        pid = http.get("/v1/loop").json()["training"]["pid"]
        os.kill(pid, signal.SIGKILL)
        failed = wait_for(http, f"/v1/train/{run}", lambda b: b["status"] != "running")
        assert failed["status"] == "failed" and "killed by a signal" in failed["error"]
        assert failed["adapter"] is None

        status = http.get("/v1/loop").json()
        assert status["serving_adapter"] == "policy-v1" and status["state"] == "running"
        assert status["counts"]["failed_runs"] == 1
        assert http.post("/v1/generate", json=GEN).json()["adapter"] == "policy-v1"

        # A run in progress when the service stops is recorded failed at the next start.
        interrupted = http.post("/v1/train", json={"steps": 100_000}).json()["id"]
        wait_for(http, f"/v1/train/{interrupted}", lambda b: b["step"] >= 1)
        before = http.get("/v1/loop").json()

    with serve(settings) as server, server.client() as http:
        status = http.get("/v1/loop").json()
        assert status["state"] == "running" and status["serving_adapter"] == "policy-v1"
        assert status["round"] >= before["round"]
        run = http.get(f"/v1/train/{interrupted}").json()
        assert run["status"] == "failed" and "interrupted" in run["error"]
        resumed = wait_for(http, "/v1/loop", lambda b: b["round"] > before["round"])
        assert resumed["counts"]["triples"] > before["counts"]["triples"]
        assert http.post("/v1/generate", json=GEN).json()["adapter"] == "policy-v1"
        assert http.post("/v1/loop/stop").json()["state"] == "stopped"

    with serve(settings) as server, server.client() as http:  # a stop is remembered too
        assert http.get("/v1/loop").json()["state"] == "stopped"
