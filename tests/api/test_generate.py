"""POST /v1/generate with the real embedded backend on a tiny random model (fast; its programs
are nonsense, which the sandbox then says): samples are stored with how they were made."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from service.api.app import create_app
from tests.api.conftest import make_settings

FAST = {"max_new_tokens": 12, "temperature": 0.8, "seed": 7}


@pytest.fixture(scope="module")
def gen(tmp_path_factory: pytest.TempPathFactory, mbpp_path: Path,
        tiny_model_dir: Path) -> Iterator[TestClient]:
    settings = make_settings(tmp_path_factory.mktemp("data"), mbpp_path, load_humaneval=False,
                             generator_backend="embedded", generator_model=str(tiny_model_dir),
                             max_n=4, max_new_tokens=64)
    with TestClient(create_app(settings)) as client:
        yield client


def test_samples_are_stored_with_how_they_were_made(gen: TestClient) -> None:
    response = gen.post("/v1/generate", json={"task_id": "mbpp/11", "n": 2, "sampling": FAST})
    assert response.status_code == 200, response.text
    out = response.json()
    assert out["task_id"] == "mbpp/11" and out["adapter"] is None
    assert out["conditioned_on"] is None  # the base model is not conditioned by default
    assert len(out["samples"]) == 2 and out["samples"][0]["id"] != out["samples"][1]["id"]
    for sample in out["samples"]:
        assert 0 < sample["completion_tokens"] <= 12 and sample["prompt_tokens"] > 20
        assert sample["finish_reason"] in ("stop", "length") and sample["result"] is None
        stored = gen.get(f"/v1/samples/{sample['id']}").json()
        assert stored["origin"] == "generated" and stored["program"] == sample["program"]
        assert stored["sampling"] == {"n": 2, "temperature": 0.8, "top_p": 0.95,
                                      "max_new_tokens": 12, "seed": 7,
                                      "repetition_penalty": 1.0}
        assert stored["model"] and stored["executions"] == []


def test_the_same_seed_gives_the_same_samples(gen: TestClient) -> None:
    body = {"task_id": "mbpp/12", "n": 2, "sampling": FAST}
    first = [s["completion"] for s in gen.post("/v1/generate", json=body).json()["samples"]]
    again = [s["completion"] for s in gen.post("/v1/generate", json=body).json()["samples"]]
    assert first == again


def test_generate_and_evaluate_at_once(gen: TestClient) -> None:
    out = gen.post("/v1/generate", json={"task_id": "mbpp/13", "n": 2, "sampling": FAST,
                                         "evaluate": True}).json()
    for sample in out["samples"]:
        result = sample["result"]
        assert result["sample_id"] == sample["id"] and result["status"] != "passed"
        assert result["reward"] == "bad" and result["feedback"]
        (triple,) = gen.get("/v1/triples", params={"sample_id": sample["id"]}).json()["items"]
        assert triple["program"] == sample["program"] and triple["adapter"] is None
    assert 'leti_generated_tokens_total{adapter="base"}' in gen.get("/metrics").text


def test_conditioning_on_the_good_marker_is_in_the_prompt(gen: TestClient) -> None:
    out = gen.post("/v1/generate", json={"task_id": "mbpp/14", "sampling": FAST,
                                         "condition_on_good": True}).json()
    assert out["conditioned_on"] == "good"
    store = gen.app.state.services.store  # type: ignore[attr-defined]
    from service.store.samples import get_sample

    with store.read() as session:
        prompt = get_sample(session, out["samples"][0]["id"]).prompt
    assert prompt.startswith("Reward: good\n\n<|im_start|>")
    assert "Write a python function" in prompt or "Write a function" in prompt


def test_an_instruction_with_tests_becomes_a_user_task(gen: TestClient) -> None:
    out = gen.post("/v1/generate", json={"instruction": "Write a function to add two numbers.",
                                         "tests": ["assert add(1, 2) == 3"],
                                         "sampling": FAST}).json()
    task = gen.get(f"/v1/tasks/{out['task_id']}").json()
    assert task["kind"] == "user" and task["tests"] == ["assert add(1, 2) == 3"]


def test_requests_that_cannot_be_served_get_4xx(gen: TestClient) -> None:
    cases = [
        ({"task_id": "mbpp/99999"}, 404, "no task"),
        ({"task_id": "mbpp/11", "adapter": "nope"}, 404, "not served"),
        ({"task_id": "mbpp/11", "n": 5}, 413, "LETI_MAX_N"),
        ({"task_id": "mbpp/11", "sampling": {"max_new_tokens": 65}}, 413, "LETI_MAX_NEW_TOKENS"),
        ({"task_id": "mbpp/11", "instruction": "x"}, 422, "exactly one"),
        ({}, 422, "exactly one"),
        ({"task_id": "mbpp/11", "sampling": {"top_p": 0}}, 422, "top_p"),
    ]
    for body, status, words in cases:
        response = gen.post("/v1/generate", json=body)
        assert response.status_code == status, (body, response.text)
        assert words in str(response.json()["detail"]), (body, response.text)


def test_repetition_penalty_is_taken_stored_and_checked(gen: TestClient) -> None:
    body = {"task_id": "mbpp/11", "sampling": {**FAST, "repetition_penalty": 1.3}}
    response = gen.post("/v1/generate", json=body)
    assert response.status_code == 200, response.text
    sample_id = response.json()["samples"][0]["id"]
    assert gen.get(f"/v1/samples/{sample_id}").json()["sampling"]["repetition_penalty"] == 1.3
    bad = gen.post("/v1/generate", json={**body, "sampling": {**FAST, "repetition_penalty": 0}})
    assert bad.status_code == 422 and "repetition_penalty" in bad.text
