"""``/v1/benchmarks`` end to end: the real app, SQLite, local sandbox and the embedded backend
with a tiny random model (its programs fail, which is fine: we check the bookkeeping is right)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from sandbox.passk import pass_at_k
from service.api.app import create_app


@pytest.fixture(scope="module")
def app_client(tmp_path_factory: pytest.TempPathFactory, mbpp_path: Path,
               tiny_model_dir: Path, settings_maker: Any) -> Iterator[TestClient]:
    settings = settings_maker(tmp_path_factory.mktemp("data"), mbpp_path,
                             generator_backend="embedded", generator_model=str(tiny_model_dir),
                             generator_device="cpu")
    with TestClient(create_app(settings)) as client:
        yield client


def wait_done(client: TestClient, run_id: str, timeout: float = 300) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        body = client.get(f"/v1/benchmarks/{run_id}").json()
        assert 0 <= body["progress"]["tasks_done"] <= body["progress"]["tasks_total"]
        if body["status"] in ("done", "failed") or time.monotonic() > deadline:
            return body
        time.sleep(0.2)


@pytest.mark.parametrize("benchmark", ["humaneval", "mbpp"])
def test_a_run_samples_scores_and_stores_per_task_results(app_client: TestClient,
                                                          benchmark: str) -> None:
    answer = app_client.post(f"/v1/benchmarks/{benchmark}",
                             json={"adapter": "base", "n": 2, "k": [1, 2], "limit": 3,
                                   "temperature": 0.8, "max_new_tokens": 16, "seed": 1})
    assert answer.status_code == 202, answer.text
    started = answer.json()
    assert started["status"] in ("pending", "running")
    assert started["progress"]["tasks_total"] == 3

    body = wait_done(app_client, started["id"])
    assert body["status"] == "done", body["error"]
    assert body["progress"] == {"tasks_done": 3, "tasks_total": 3}
    assert body["adapter"] == "base" and body["model"]
    results = body["results"]
    assert len(results) == 3 and all(r["n"] == 2 for r in results)
    prefix = "humaneval/HumanEval/" if benchmark == "humaneval" else "mbpp/"
    assert all(r["task_id"].startswith(prefix) for r in results)
    for r in results:
        assert r["correct"] == sum(s["passed"] for s in r["samples"])
        assert all(s["status"] and s["program"] for s in r["samples"])
    flags = {r["task_id"]: [s["passed"] for s in r["samples"]] for r in results}
    assert body["pass_at_k"] == pytest.approx(pass_at_k(flags, [1, 2]))

    listed = app_client.get("/v1/benchmarks", params={"benchmark": benchmark}).json()
    assert started["id"] in [r["id"] for r in listed]
    assert all(r["results"] is None for r in listed)
    lean = app_client.get(f"/v1/benchmarks/{started['id']}", params={"samples": False}).json()
    assert all(r["samples"] is None for r in lean["results"])


def test_bad_requests_get_clear_4xx(app_client: TestClient) -> None:
    too_big_k = app_client.post("/v1/benchmarks/humaneval", json={"n": 2, "k": [1, 5]})
    assert too_big_k.status_code == 422 and "between 1 and n=2" in too_big_k.text
    unknown = app_client.post("/v1/benchmarks/humaneval", json={"adapter": "nope-v9"})
    assert unknown.status_code == 404 and "nope-v9" in unknown.json()["detail"]
    assert app_client.post("/v1/benchmarks/apps", json={}).status_code == 405
    assert app_client.post("/v1/benchmarks/mbpp", json={"split": "nosuch"}).status_code == 404
    missing = app_client.get("/v1/benchmarks/0123456789abcdef")
    assert missing.status_code == 404 and "no benchmark run" in missing.json()["detail"]
    assert app_client.post("/v1/benchmarks/humaneval", json={"n": 0}).status_code == 422


def test_without_a_generator_a_benchmark_is_a_503(tmp_path: Path, mbpp_path: Path,
                                                  settings_maker: Any) -> None:
    with TestClient(create_app(settings_maker(tmp_path, mbpp_path))) as client:
        answer = client.post("/v1/benchmarks/humaneval", json={"limit": 1})
        assert answer.status_code == 503 and answer.json()["component"] == "generator"
        assert client.get("/v1/benchmarks").json() == []


def test_a_run_cut_short_by_a_restart_is_stored_as_interrupted(
        tmp_path: Path, mbpp_path: Path, tiny_model_dir: Path, settings_maker: Any) -> None:
    # 4 rows: a generate call carries 16 of the 40 tasks, so the run commits in 3 steps
    settings = settings_maker(tmp_path, mbpp_path, generator_backend="embedded",
                              generator_model=str(tiny_model_dir), generator_device="cpu",
                              generator_batch_size=4)
    with TestClient(create_app(settings)) as client:
        started = client.post("/v1/benchmarks/mbpp",
                              json={"adapter": "base", "n": 1, "k": [1], "limit": 40,
                                    "max_new_tokens": 8}).json()
        deadline = time.monotonic() + 120
        while True:  # progress and per-task results are readable while the run goes on
            body = client.get(f"/v1/benchmarks/{started['id']}").json()
            if body["progress"]["tasks_done"] > 0 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert body["status"] == "running" and body["pass_at_k"] is None
        assert len(body["results"]) == body["progress"]["tasks_done"] < 40
    # the app stopped with the run in flight: shutdown stored it as interrupted
    with TestClient(create_app(settings)) as client:
        body = client.get(f"/v1/benchmarks/{started['id']}").json()
        assert body["status"] == "failed" and "interrupted" in body["error"]
        assert body["progress"]["tasks_done"] < 40
