"""The OpenAI-compatible routes on the vLLM backend: the official ``openai`` client against the
service (in process, so a test can hot-swap adapters on the app's loop), which talks to the
in-repo double of the pinned vLLM (NOT vLLM; backed by a tiny random model) over real HTTP. The
alias resolves to the versioned adapter name vLLM serves, streams are vLLM's passed through, and
vLLM's refusals come back as OpenAI 400s."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from fastapi.testclient import TestClient

from service.api.app import create_app
from tests.api.conftest import LiveServer, make_settings

SERVED = "SmolLM2-135M-Instruct"
CHAT = [{"role": "user", "content": "Write a function add(a, b) returning a + b."}]


@pytest.fixture(scope="module")
def double(tiny_model_dir: Path) -> Iterator[LiveServer]:
    from service.generation.embedded import EmbeddedGenerator
    from tests.generation.vllm_double import create_app as create_double

    generator = EmbeddedGenerator.load(str(tiny_model_dir), device="cpu", max_lora_rank=None)
    with LiveServer(create_double(generator, SERVED, max_lora_rank=16,
                                  max_model_len=512)) as server:
        yield server


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, mbpp_path: Path, double: LiveServer,
            tiny_model_dir: Path) -> Iterator[TestClient]:
    settings = make_settings(tmp_path_factory.mktemp("data"), mbpp_path, load_humaneval=False,
                             generator_backend="vllm", generator_model=SERVED,
                             vllm_url=double.url, tokenizer=str(tiny_model_dir), max_n=4,
                             max_new_tokens=64)
    with TestClient(create_app(settings)) as http:
        yield http


@pytest.fixture
def client(service: TestClient) -> openai.OpenAI:
    return openai.OpenAI(base_url="http://testserver/v1", api_key="unused", http_client=service,
                         max_retries=0, timeout=120)


def requests(double: LiveServer) -> list[dict[str, Any]]:
    return double.server.config.app.state.requests


def test_chat_and_completions_through_vllm(client: openai.OpenAI, double: LiveServer) -> None:
    assert [m.id for m in client.models.list()] == ["policy", "base"]
    chat = client.chat.completions.create(model="policy", messages=CHAT, n=2, max_tokens=6,
                                          temperature=0)
    assert len(chat.choices) == 2 and chat.choices[0].message.content
    assert chat.choices[0].message.content == chat.choices[1].message.content  # greedy
    sent = requests(double)[-1]
    assert sent["model"] == SERVED and sent["n"] == 2
    assert sent["add_special_tokens"] is False  # the prompt carries the chat template
    assert sent["prompt"][0].startswith("<|im_start|>")
    text = client.completions.create(model="base", prompt=["def add(a, b):", "x ="], n=2,
                                     max_tokens=4, temperature=0)
    assert [c.index for c in text.choices] == [0, 1, 2, 3]
    assert text.usage.completion_tokens <= 16


def test_streams_are_vllms_passed_through(client: openai.OpenAI, double: LiveServer) -> None:
    whole = client.chat.completions.create(model="policy", messages=CHAT, n=2, max_tokens=8,
                                           temperature=0)
    pieces: dict[int, list[str]] = {0: [], 1: []}
    usage = None
    for chunk in client.chat.completions.create(model="policy", messages=CHAT, n=2,
                                                max_tokens=8, temperature=0, stream=True,
                                                stream_options={"include_usage": True}):
        usage = chunk.usage or usage
        for choice in chunk.choices:
            if choice.delta.content:
                pieces[choice.index].append(choice.delta.content)
    assert requests(double)[-1]["stream"] is True  # vLLM streamed it to us
    assert ["".join(p) for p in pieces.values()] == [c.message.content for c in whole.choices]
    assert max(len(p) for p in pieces.values()) > 1  # in several chunks, as vLLM sent them
    assert usage is not None and usage.completion_tokens == whole.usage.completion_tokens
    streamed = "".join(c.choices[0].text for c in client.completions.create(
        model="base", prompt="def f(", max_tokens=5, temperature=0, stream=True) if c.choices)
    assert streamed == client.completions.create(model="base", prompt="def f(", max_tokens=5,
                                                 temperature=0).choices[0].text


def test_a_prompt_over_vllms_context_is_a_400(client: openai.OpenAI,
                                              service: TestClient) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.completions.create(model="base", prompt="word " * 600, max_tokens=4)
    assert "maximum context length" in caught.value.body["message"]  # type: ignore[index]
    generate = service.post("/v1/generate", json={"instruction": "word " * 600, "n": 1})
    assert generate.status_code == 422  # the rest of the API: a 4xx too, never a 503
    assert "maximum context length" in generate.json()["detail"]


def test_a_streamed_answer_is_stored(client: openai.OpenAI, service: TestClient) -> None:
    finish = [c for c in client.chat.completions.create(
        model="policy", messages=CHAT, max_tokens=4, stream=True) if c.choices
        and c.choices[0].finish_reason]
    sample_id = finish[0].choices[0].leti["sample_id"]  # type: ignore[attr-defined]
    stored = service.get(f"/v1/samples/{sample_id}")
    assert stored.status_code == 200 and stored.json()["origin"] == "generated"


def test_the_alias_resolves_to_the_versioned_adapter(service: TestClient, client: openai.OpenAI,
                                                     double: LiveServer, tiny_model_dir: Path,
                                                     tmp_path: Path) -> None:
    from tests.api.test_openai import _random_adapter

    generator = service.app.state.services.generation.generator  # type: ignore[attr-defined]
    adapter = _random_adapter(tiny_model_dir, tmp_path / "a", seed=3)
    assert service.portal is not None
    assert service.portal.call(generator.hot_swap, adapter) == "policy-v1"
    assert [m.id for m in client.models.list()] == ["policy", "base", "policy-v1"]
    answer = client.chat.completions.create(model="policy", messages=CHAT, max_tokens=3)
    assert answer.model == "policy-v1"
    assert requests(double)[-1]["model"] == "policy-v1"  # what vLLM was asked for
    assert requests(double)[-1]["prompt"][0].startswith("Reward: good\n")
    streamed = list(client.chat.completions.create(model="policy", messages=CHAT, max_tokens=3,
                                                   stream=True))
    assert streamed[0].model == "policy-v1" and requests(double)[-1]["model"] == "policy-v1"
    service.portal.call(generator.activate, None)


def test_replicas_from_leti_vllm_urls(tmp_path: Path, mbpp_path: Path, double: LiveServer,
                                      tiny_model_dir: Path) -> None:
    """LETI_VLLM_URLS: the service spreads completions over the replicas and keeps answering
    while one of them fails."""
    from service.generation.embedded import EmbeddedGenerator
    from tests.generation.vllm_double import create_app as create_double

    other_generator = EmbeddedGenerator.load(str(tiny_model_dir), device="cpu", max_lora_rank=None)
    with LiveServer(create_double(other_generator, SERVED, max_lora_rank=16)) as other:
        settings = make_settings(tmp_path / "data", mbpp_path, load_humaneval=False,
                                 generator_backend="vllm", generator_model=SERVED,
                                 vllm_urls=f"{double.url}, {other.url}",
                                 tokenizer=str(tiny_model_dir))
        assert settings.vllm_base_urls == [double.url, other.url]
        with TestClient(create_app(settings)) as http:
            client = openai.OpenAI(base_url="http://testserver/v1", api_key="x",
                                   http_client=http, max_retries=0)
            before = len(requests(double))
            texts = {client.completions.create(model="base", prompt="x =", max_tokens=3,
                                               temperature=0).choices[0].text for _ in range(4)}
            assert len(texts) == 1  # the same model behind both
            assert len(requests(double)) > before and requests(other)
            faults = other.server.config.app.state.faults
            faults.fail_next = 10_000  # the second replica fails from now on
            for _ in range(3):
                assert client.completions.create(model="base", prompt="x =", max_tokens=3,
                                                 temperature=0).choices[0].text in texts
            faults.fail_next = 0

