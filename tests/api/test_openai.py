"""The OpenAI-compatible routes driven by the official ``openai`` package (nobody here wrote it)
against a live server with the embedded backend (a tiny random model) and the local sandbox:
chat and completions, streamed and not, n > 1, bad requests, auth, samples and feedback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from fastapi.testclient import TestClient

from service.api.app import create_app
from tests.api.conftest import LiveServer, make_settings

KEY = "test-key-0123456789abcdef"
CHAT = [{"role": "system", "content": "You write Python."},
        {"role": "user", "content": "Write a function add(a, b) returning a + b."}]


def settings_for(root: Path, mbpp_path: Path, model_dir: Path, **extra: Any) -> Any:
    return make_settings(root, mbpp_path, load_humaneval=False, generator_backend="embedded",
                         generator_model=str(model_dir), generator_device="cpu", max_n=4,
                         max_new_tokens=32, api_key=KEY, **extra)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, mbpp_path: Path,
         tiny_model_dir: Path) -> Iterator[LiveServer]:
    app = create_app(settings_for(tmp_path_factory.mktemp("data"), mbpp_path, tiny_model_dir))
    with LiveServer(app) as server:
        yield server


@pytest.fixture
def client(live: LiveServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{live.url}/v1", api_key=KEY, max_retries=0, timeout=120)


def test_models_lists_the_alias_and_base(client: openai.OpenAI) -> None:
    ids = [m.id for m in client.models.list()]
    assert ids == ["policy", "base"]
    assert client.models.retrieve("policy").id == "policy"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("gpt-4")


def test_chat_completion_with_n_seed_usage_and_stored_samples(client: openai.OpenAI,
                                                              live: LiveServer) -> None:
    answer = client.chat.completions.create(model="policy", messages=CHAT, n=2, max_tokens=6,
                                            seed=3, temperature=0.8)
    assert answer.object == "chat.completion"
    assert answer.model == "base"  # nothing promoted yet: the alias serves the base model
    assert [c.index for c in answer.choices] == [0, 1]
    assert all(c.message.role == "assistant" and c.message.content for c in answer.choices)
    assert all(c.finish_reason in ("stop", "length") for c in answer.choices)
    assert answer.usage.completion_tokens <= 12 and answer.usage.prompt_tokens > 10
    assert answer.usage.total_tokens == answer.usage.prompt_tokens + answer.usage.completion_tokens
    again = client.chat.completions.create(model="policy", messages=CHAT, n=2, max_tokens=6,
                                           seed=3, temperature=0.8)
    assert [c.message.content for c in again.choices] == \
        [c.message.content for c in answer.choices]  # the seed repeats the request
    ids = [c.leti["sample_id"] for c in answer.choices]  # type: ignore[attr-defined]
    assert answer.id == ids[0] and len(set(ids)) == 2
    with live.client(headers={"X-API-Key": KEY}) as http:
        stored = http.get(f"/v1/samples/{ids[1]}").json()
        assert stored["origin"] == "generated" and stored["adapter"] is None
        assert stored["sampling"]["seed"] == 3 and stored["sampling"]["n"] == 2
        assert stored["task_id"].startswith("user/")
        feedback = http.post("/v1/feedback", json={"sample_id": answer.id, "thumb": "up",
                                                   "text": "Nice."})
        assert feedback.status_code == 201, feedback.text
        assert feedback.json()["label"] == "good" and feedback.json()["triple"] is True


def test_completions_with_several_prompts_and_n(client: openai.OpenAI) -> None:
    answer = client.completions.create(model="base", prompt=["def add(a, b):", "x = "], n=2,
                                       max_tokens=4, temperature=0)
    assert answer.object == "text_completion"
    assert [c.index for c in answer.choices] == [0, 1, 2, 3]
    texts = [c.text for c in answer.choices]
    assert texts[0] == texts[1] and texts[2] == texts[3]  # greedy: both choices of a prompt agree
    one = client.completions.create(model="base", prompt="x = ", max_tokens=4, temperature=0)
    assert one.choices[0].text == texts[2]
    assert answer.usage.prompt_tokens > one.usage.prompt_tokens  # each prompt counted once
    assert answer.usage.completion_tokens <= 4 * 4


def test_chat_stream_matches_the_whole_answer(client: openai.OpenAI) -> None:
    whole = client.chat.completions.create(model="policy", messages=CHAT, n=2, max_tokens=6,
                                           seed=11)
    stream = client.chat.completions.create(model="policy", messages=CHAT, n=2, max_tokens=6,
                                            seed=11, stream=True,
                                            stream_options={"include_usage": True})
    texts, finish, usage, ids = ["", ""], [None, None], None, set()
    for chunk in stream:
        assert chunk.object == "chat.completion.chunk"
        ids.add(chunk.id)
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            texts[choice.index] += choice.delta.content or ""
            if choice.finish_reason:
                finish[choice.index] = choice.finish_reason
    assert texts == [c.message.content for c in whole.choices]
    assert finish == [c.finish_reason for c in whole.choices]
    assert len(ids) == 1 and usage is not None
    assert usage.completion_tokens == whole.usage.completion_tokens


def test_completion_stream_ends_in_done(client: openai.OpenAI, live: LiveServer) -> None:
    chunks = list(client.completions.create(model="base", prompt="def f(", max_tokens=4,
                                            temperature=0, stream=True))
    assert chunks and all(c.object == "text_completion" for c in chunks)
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")
    whole = client.completions.create(model="base", prompt="def f(", max_tokens=4, temperature=0)
    assert "".join(c.choices[0].text for c in chunks) == whole.choices[0].text
    body = {"model": "base", "prompt": "def f(", "max_tokens": 2, "stream": True}
    with live.client(headers={"Authorization": f"Bearer {KEY}"}) as http, \
            http.stream("POST", "/v1/completions", json=body) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in response.iter_lines() if line]
    assert all(line.startswith("data: ") for line in lines)
    assert lines[-1] == "data: [DONE]"


def test_tests_in_the_extension_run_in_the_sandbox(client: openai.OpenAI,
                                                   live: LiveServer) -> None:
    answer = client.chat.completions.create(
        model="policy", messages=[{"role": "user", "content": "Write add(a, b)."}], n=2,
        max_tokens=8, extra_body={"leti": {"tests": ["assert add(1, 2) == 3"]}})
    for choice in answer.choices:
        result = choice.leti["result"]  # type: ignore[attr-defined]
        assert result["tests_total"] == 1 and result["passed"] is False  # random weights
        assert result["status"] in ("error", "syntax_error", "failed") and result["feedback"]
        with live.client() as http:
            stored = http.get(f"/v1/samples/{choice.leti['sample_id']}").json()  # type: ignore[attr-defined]
        assert stored["executions"][0]["feedback"] == result["feedback"]


@pytest.mark.parametrize("change, param, says", [
    ({"temperature": 5}, "temperature", "less than or equal to 2"),
    ({"n": 9}, None, "LETI_MAX_N"),
    ({"max_tokens": 1000}, None, "LETI_MAX_NEW_TOKENS"),
    ({"messages": []}, "messages", "at least 1"),
    ({"extra_body": {"unknown_field": 1}}, "unknown_field", "Extra inputs"),
    ({"presence_penalty": 1.0}, None, "presence_penalty"),
    ({"stop": ["a", "b", "c", "d", "e"]}, None, "at most 4"),
    ({"extra_body": {"leti": {"tests": ["assert ("]}}}, None, "not valid Python"),
    ({"messages": [{"role": "tool", "content": "x"}]}, "messages.0.role", "Input should be"),
    ({"stop": "a\x00"}, "stop", "NUL"),
])
def test_bad_requests_are_openai_400s(client: openai.OpenAI, change: dict[str, Any],
                                      param: str | None, says: str) -> None:
    request: dict[str, Any] = {"model": "policy", "messages": CHAT, "max_tokens": 2, **change}
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(**request)
    error = caught.value.body
    assert isinstance(error, dict) and error["type"] == "invalid_request_error"
    assert says in error["message"]
    if param is not None:
        assert error["param"] == param


def test_unknown_model_is_a_404(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.completions.create(model="gpt-4", prompt="x", max_tokens=2)
    assert caught.value.body["code"] == "model_not_found"  # type: ignore[index]


def test_malformed_json_is_a_400_in_openai_shape(live: LiveServer) -> None:
    with live.client(headers={"X-API-Key": KEY, "content-type": "application/json"}) as http:
        answer = http.post("/v1/chat/completions", content=b"{not json")
    assert answer.status_code == 400
    assert set(answer.json()["error"]) == {"message", "type", "param", "code"}
    assert answer.json()["error"]["message"].startswith("the body is not valid JSON")


def test_auth_bearer_or_x_api_key(live: LiveServer) -> None:
    wrong = openai.OpenAI(base_url=f"{live.url}/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as caught:
        wrong.completions.create(model="base", prompt="x", max_tokens=2)
    assert caught.value.body["code"] == "invalid_api_key"  # type: ignore[index]
    body = {"model": "base", "prompt": "x", "max_tokens": 2}
    with httpx.Client(base_url=live.url) as http:
        assert http.post("/v1/completions", json=body).status_code == 401
        assert http.post("/v1/completions", json=body,
                         headers={"X-API-Key": KEY}).status_code == 200
        assert http.post("/v1/completions", json=body,
                         headers={"Authorization": f"Bearer {KEY}"}).status_code == 200
        assert http.get("/v1/models").status_code == 200  # reads need no key


def test_policy_follows_promotions_and_rollbacks(tmp_path: Path, mbpp_path: Path,
                                                 tiny_model_dir: Path) -> None:
    """In process (the generator's hot swap runs on the app's loop), with the openai client
    over the test client's transport."""
    adapters = [_random_adapter(tiny_model_dir, tmp_path / f"a{i}", seed=i) for i in (1, 2)]
    app = create_app(settings_for(tmp_path / "data", mbpp_path, tiny_model_dir))
    with TestClient(app) as http:
        client = openai.OpenAI(base_url="http://testserver/v1", api_key=KEY, http_client=http,
                               max_retries=0)
        generator = app.state.services.generation.generator
        assert http.portal is not None
        first = http.portal.call(generator.hot_swap, adapters[0])
        assert [m.id for m in client.models.list()] == ["policy", "base", first]
        answer = client.chat.completions.create(model="policy", messages=CHAT, max_tokens=3)
        assert answer.model == first == "policy-v1"
        prompt = _stored_prompt(app, answer.id)
        assert prompt.startswith("Reward: good\n")  # an adapter samples: LETI's marker first
        second = http.portal.call(lambda: generator.hot_swap(adapters[1], wait=True))
        assert [m.id for m in client.models.list()] == ["policy", "base", second]
        assert client.chat.completions.create(model="policy", messages=CHAT,
                                              max_tokens=3).model == "policy-v2"
        pinned = client.completions.create(model="policy-v2", prompt="x", max_tokens=2)
        assert pinned.model == "policy-v2"
        http.portal.call(generator.activate, None)  # rolled back to the base model
        rolled = client.chat.completions.create(model="policy", messages=CHAT, max_tokens=3)
        assert rolled.model == "base"
        assert not _stored_prompt(app, rolled.id).startswith("Reward:")
        with pytest.raises(openai.NotFoundError):
            client.completions.create(model="policy-v1", prompt="x", max_tokens=2)


def test_no_generator_is_a_503_in_openai_shape(client_no_generator: TestClient) -> None:
    answer = client_no_generator.post("/v1/chat/completions",
                                      json={"model": "policy", "messages": CHAT})
    assert answer.status_code == 503
    assert answer.json()["error"]["type"] == "server_error"


@pytest.fixture
def client_no_generator(client_module: TestClient) -> TestClient:
    return client_module


@pytest.fixture(scope="module")
def client_module(tmp_path_factory: pytest.TempPathFactory, mbpp_path: Path,
                  ) -> Iterator[TestClient]:
    app = create_app(make_settings(tmp_path_factory.mktemp("data"), mbpp_path,
                                   load_humaneval=False))
    with TestClient(app) as http:
        yield http


def _random_adapter(model_dir: Path, out: Path, seed: int) -> Path:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, init_lora_weights=False,
                                                  target_modules=["q_proj", "v_proj"],
                                                  task_type="CAUSAL_LM"))
    peft_model.save_pretrained(out)
    return out


def _stored_prompt(app: Any, sample_id: str) -> str:
    from service.store.models import SampleRow

    with app.state.services.store.read() as session:
        row = session.get(SampleRow, sample_id)
        assert row is not None
        return row.prompt or ""
