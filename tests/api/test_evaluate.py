"""POST /v1/evaluate on a real store and the local sandbox: every way of naming programs, what is
stored, and the 4xx answers for requests that cannot be run."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from fastapi.testclient import TestClient

from service.api.app import create_app
from service.store.samples import NewSample, add_samples
from tests.api.conftest import LiveServer

ADD_TESTS = ["assert add(1, 2) == 3", "assert add(-1, 1) == 0"]


def test_programs_with_tests_are_run_stored_and_fed_back(client: TestClient) -> None:
    body = {"programs": ["def add(a, b):\n    return a + b\n",
                         "def add(a, b):\n    return a - b\n",
                         "def add(a, b)\n    return a + b\n"],
            "tests": ADD_TESTS, "instruction": "Write a function to add two numbers."}
    response = client.post("/v1/evaluate", json=body)
    assert response.status_code == 200, response.text
    passed, failed, syntax = response.json()["results"]
    assert (passed["status"], passed["passed"], passed["reward"], passed["score"]) == \
        ("passed", True, "good", 1.0)
    assert passed["feedback"] == "All 2 tests passed."
    assert failed["status"] == "failed" and failed["reward"] == "bad" and failed["score"] == 0.0
    assert failed["feedback"] == "Test 1 failed: assert add(1, 2) == 3\nExpected 3, got -1."
    assert syntax["status"] == "syntax_error" and "SyntaxError" in syntax["feedback"]
    assert passed["task_id"].startswith("user/") and passed["task_id"] == failed["task_id"]

    stored = client.get(f"/v1/samples/{failed['sample_id']}").json()
    assert stored["program"] == body["programs"][1] and stored["origin"] == "submitted"
    assert [e["status"] for e in stored["executions"]] == ["failed"]
    assert stored["executions"][0]["id"] == failed["execution_id"]


def test_the_same_instruction_and_tests_name_the_same_user_task(client: TestClient) -> None:
    body = {"programs": ["def add(a, b): return a + b"], "tests": ADD_TESTS,
            "instruction": "Add two numbers, again."}
    first = client.post("/v1/evaluate", json=body).json()["results"][0]
    second = client.post("/v1/evaluate", json=body).json()["results"][0]
    assert first["task_id"] == second["task_id"] and first["sample_id"] != second["sample_id"]
    task = client.get(f"/v1/tasks/{first['task_id']}").json()
    assert task["kind"] == "user" and task["tests"] == ADD_TESTS


def test_programs_for_an_mbpp_task_run_against_its_tests(client: TestClient) -> None:
    task = client.get("/v1/tasks/mbpp/2").json()
    response = client.post("/v1/evaluate", json={"task_id": "mbpp/2",
                                                 "programs": [task["reference"], "x = 1"]})
    assert response.status_code == 200, response.text
    good, bad = response.json()["results"]
    assert good["status"] == "passed" and good["tests_total"] == len(task["tests"])
    assert bad["status"] == "error" and "NameError" in bad["feedback"]


def test_a_humaneval_completion_runs_after_its_prompt(client: TestClient) -> None:
    response = client.post("/v1/evaluate", json={
        "task_id": "humaneval/HumanEval/0",
        "programs": ["    return any(abs(a - b) < threshold for i, a in enumerate(numbers)"
                     " for b in numbers[i + 1:])\n"]})
    assert response.status_code == 200, response.text
    result = response.json()["results"][0]
    assert result["status"] == "passed", result["feedback"]
    program = client.get(f"/v1/samples/{result['sample_id']}").json()["program"]
    assert program.startswith("from typing import List")  # the prompt, then the completion


def test_stored_samples_run_again_by_id(client: TestClient) -> None:
    first = client.post("/v1/evaluate", json={"programs": ["def add(a, b): return a + b"],
                                              "tests": ADD_TESTS}).json()["results"][0]
    again = client.post("/v1/evaluate", json={"sample_ids": [first["sample_id"]]})
    assert again.status_code == 200, again.text
    result = again.json()["results"][0]
    assert result["sample_id"] == first["sample_id"] and result["status"] == "passed"
    assert result["execution_id"] != first["execution_id"]
    executions = client.get(f"/v1/samples/{first['sample_id']}").json()["executions"]
    assert len(executions) == 2


def test_a_task_id_alone_runs_its_samples_that_never_ran(client: TestClient) -> None:
    store = client.app.state.services.store  # type: ignore[attr-defined]
    reference = client.get("/v1/tasks/mbpp/3").json()["reference"]
    with store.write() as session:
        rows = add_samples(session, [NewSample("mbpp/3", reference, origin="generated"),
                                     NewSample("mbpp/3", "def nope(): pass", origin="generated")])
        ids = [row.id for row in rows]
    results = client.post("/v1/evaluate", json={"task_id": "mbpp/3"}).json()["results"]
    assert [r["sample_id"] for r in results] == ids
    assert [r["status"] for r in results] == ["passed", "error"]
    assert client.post("/v1/evaluate", json={"task_id": "mbpp/3"}).json()["results"] == []


def test_requests_that_cannot_run_get_clear_4xx_answers(client: TestClient) -> None:
    cases = [
        ({"task_id": "mbpp/99999", "programs": ["x = 1"]}, 404, "no task 'mbpp/99999'"),
        ({"sample_ids": ["nope"]}, 404, "no sample(s) 'nope'"),
        ({"programs": ["x = 1"]}, 422, "need 'tests'"),
        ({"programs": ["x = 1"], "sample_ids": ["a"]}, 422, "exactly one of"),
        ({}, 422, "exactly one of"),
        ({"programs": [], "tests": ["assert True"]}, 422, "at least one program"),
        ({"programs": ["x = 1"], "tests": ["assert (("]}, 422, "not valid Python"),
        ({"programs": ["x = 1"], "tests": ["assert True"], "timeout": 100}, 422,
         "LETI_SANDBOX_TIMEOUT_S"),
        ({"programs": ["x = 1"], "tests": ["assert True"], "surprise": 1}, 422, "surprise"),
    ]
    for body, status, words in cases:
        response = client.post("/v1/evaluate", json=body)
        assert response.status_code == status, (body, response.text)
        assert words in str(response.json()["detail"]), (body, response.text)


def test_limits_are_413_and_name_their_setting(settings_for) -> None:  # type: ignore[no-untyped-def]
    app = create_app(settings_for(max_programs=2, max_program_bytes=300, load_humaneval=False))
    with TestClient(app) as client:
        many = client.post("/v1/evaluate", json={"programs": ["x = 1"] * 3,
                                                 "tests": ["assert True"]})
        assert many.status_code == 413 and "LETI_MAX_PROGRAMS" in many.json()["detail"]
        big = client.post("/v1/evaluate", json={"programs": ["x = 1\n" * 100],
                                                "tests": ["assert True"]})
        assert big.status_code == 413 and "LETI_MAX_PROGRAM_BYTES" in big.json()["detail"]


def test_slow_programs_do_not_block_other_requests(tmp_path: Path, mbpp_path: Path) -> None:
    """While a program sleeps in the sandbox, the server keeps answering (ordering, not timing)."""
    from tests.api.conftest import make_settings

    app = create_app(make_settings(tmp_path, mbpp_path, load_humaneval=False))
    done = threading.Event()
    with LiveServer(app) as server, server.client() as http:
        def slow() -> None:
            http.post("/v1/evaluate", json={
                "programs": ["import time\ntime.sleep(3)\n"], "tests": ["assert True"]})
            done.set()

        worker = threading.Thread(target=slow)
        worker.start()
        sandbox = app.state.services.sandbox
        try:
            while sandbox.in_flight == 0:  # the sleeping program is running now
                assert worker.is_alive(), "the slow request ended before it ran"
                time.sleep(0.01)
            with server.client() as other:
                for _ in range(3):
                    assert other.get("/healthz").status_code == 200
                    assert other.get("/v1/tasks", params={"limit": 1}).status_code == 200
            assert not done.is_set(), "the other requests waited for the sleeping program"
        finally:
            worker.join(60)
        assert done.is_set()
