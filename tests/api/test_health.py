"""/healthz, /readyz (each backend checked for real), /metrics, /v1/tasks, and 503s that name
whatever is down."""

from __future__ import annotations

from fastapi.testclient import TestClient

from service.api.app import create_app


def test_healthz_and_readyz_when_everything_is_up(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"] == {"store": "ok", "sandbox": "ok", "generator": "disabled"}


def test_the_catalogue_lists_mbpp_and_humaneval(client: TestClient) -> None:
    mbpp = client.get("/v1/tasks", params={"kind": "mbpp", "limit": 1000}).json()
    assert len(mbpp["items"]) == 974 and mbpp["next_cursor"] is None
    humaneval = client.get("/v1/tasks", params={"kind": "humaneval", "limit": 1000}).json()
    assert len(humaneval["items"]) == 164
    task = client.get("/v1/tasks/humaneval/HumanEval/0").json()
    assert task["entry_point"] == "has_close_elements" and task["split"] == "test"
    train = client.get("/v1/tasks", params={"split": "train", "limit": 1000}).json()["items"]
    assert len(train) == 374 and all(t["id"].startswith("mbpp/") for t in train)
    assert client.get("/v1/tasks/mbpp/0").status_code == 404


def test_a_user_task_can_be_created_once(client: TestClient) -> None:
    body = {"instruction": "Return 1.", "tests": ["assert one() == 1"]}
    first = client.post("/v1/tasks", json=body)
    assert first.status_code == 201 and first.json()["kind"] == "user"
    assert client.post("/v1/tasks", json=body).json()["id"] == first.json()["id"]
    assert client.post("/v1/tasks", json={"instruction": " "}).status_code == 422


def test_metrics_count_requests_and_executions_by_status(client: TestClient) -> None:
    client.post("/v1/evaluate", json={"programs": ["x = 1", "x = (", "x = 2"],
                                      "tests": ["assert x == 1"]})
    text = client.get("/metrics").text
    assert 'leti_executions_total{status="passed"}' in text
    assert 'leti_executions_total{status="syntax_error"}' in text
    assert 'leti_executions_total{status="failed"}' in text
    assert 'leti_http_requests_total{method="POST",route="/v1/evaluate",status="200"}' in text
    assert 'leti_http_request_duration_seconds_bucket{le="0.005",method="POST",' \
           'route="/v1/evaluate"}' in text
    assert "leti_generated_tokens_total" in text


def test_a_closed_sandbox_is_503_naming_it(settings_for) -> None:  # type: ignore[no-untyped-def]
    with TestClient(create_app(settings_for(load_humaneval=False))) as client:
        client.app.state.services.sandbox.pool.close()  # type: ignore[attr-defined]
        response = client.post("/v1/evaluate", json={"programs": ["x = 1"],
                                                     "tests": ["assert x == 1"]})
        assert response.status_code == 503
        assert response.json()["component"] == "sandbox"
        assert "sandbox unavailable" in response.json()["detail"]
        ready = client.get("/readyz")
        assert ready.status_code == 503 and ready.json()["down"] == ["sandbox"]


def test_a_lost_database_is_503_naming_the_store(settings_for) -> None:  # type: ignore[no-untyped-def]
    settings = settings_for(load_humaneval=False)
    with TestClient(create_app(settings)) as client:
        store = client.app.state.services.store  # type: ignore[attr-defined]
        for suffix in ("", "-wal", "-shm"):  # the volume went away: a fresh empty file appears
            (settings.data_dir / f"leti.db{suffix}").unlink(missing_ok=True)
        store.engine.dispose()
        response = client.get("/v1/tasks")
        assert response.status_code == 503, response.text
        assert response.json() == {"detail": "store unavailable: OperationalError",
                                   "component": "store"}


def test_an_unreachable_generator_is_503_naming_it(settings_for) -> None:  # type: ignore[no-untyped-def]
    from tests.api.conftest import free_port

    settings = settings_for(load_humaneval=False, generator_backend="vllm",
                            generator_model="m", vllm_url=f"http://127.0.0.1:{free_port()}")
    with TestClient(create_app(settings)) as client:
        response = client.post("/v1/generate", json={"task_id": "mbpp/11"})
        assert response.status_code == 503 and response.json()["component"] == "generator"
        assert "vllm generator did not start" in response.json()["detail"]
        ready = client.get("/readyz")
        assert ready.status_code == 503 and ready.json()["down"] == ["generator"]
        assert client.post("/v1/evaluate", json={"programs": ["x = 1"], "tests": [
            "assert x == 1"]}).status_code == 200  # everything else still works


def test_bodies_over_the_limit_are_413(settings_for) -> None:  # type: ignore[no-untyped-def]
    with TestClient(create_app(settings_for(load_humaneval=False, max_body_bytes=2048))) as c:
        big = {"programs": ["x = 1"], "tests": ["assert True"], "instruction": "a" * 4096}
        response = c.post("/v1/evaluate", json=big)
        assert response.status_code == 413 and "LETI_MAX_BODY_BYTES" in response.json()["detail"]

        def chunks():  # no Content-Length: counted as it arrives
            yield b'{"programs": ["x = 1"], "tests": ["assert True"], "instruction": "'
            for _ in range(8):
                yield b"a" * 512
            yield b'"}'

        streamed = c.post("/v1/evaluate", content=chunks(),
                          headers={"content-type": "application/json"})
        assert streamed.status_code == 413, streamed.text
