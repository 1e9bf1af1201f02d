"""The vLLM client against the in-repo double of the pinned vLLM version (NOT vLLM: see
docs/GENERATION.md), served over real HTTP by uvicorn and backed by the tiny embedded model."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Self

import pytest

from service.generation import (
    AdapterError,
    AdapterNotFound,
    BackendUnavailable,
    SamplingParams,
)
from service.generation.vllm_client import RetryPolicy, VLLMGenerator

SERVED = "SmolLM2-135M-Instruct"
FAST_RETRY = RetryPolicy(attempts=3, backoff_s=0.01, timeout_s=30.0)
GREEDY = SamplingParams(temperature=0, max_new_tokens=8)


class DoubleServer:
    """The double on a free local port, in a thread with its own event loop."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        self.app = app
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port,
                                                    log_level="warning", lifespan="off"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Self:
        self.thread.start()
        while not self.server.started:
            threading.Event().wait(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def _serve(tiny_model: Any, tokenizer: Any, served_tokenizer: Any = None,
           **options: Any) -> DoubleServer:
    from service.generation.embedded import EmbeddedGenerator
    from tests.generation.vllm_double import create_app

    generator = EmbeddedGenerator(tiny_model, tokenizer, max_lora_rank=None)
    return DoubleServer(create_app(generator, SERVED, tokenizer=served_tokenizer, **options))


@pytest.fixture
def double(tiny_model: Any, smol_tokenizer: Any) -> Iterator[DoubleServer]:
    with _serve(tiny_model, smol_tokenizer, max_lora_rank=16) as server:
        yield server


@pytest.fixture
async def client(double: DoubleServer) -> Any:
    generator = VLLMGenerator(double.url, SERVED, retry=FAST_RETRY, max_lora_rank=16)
    await generator.start()
    yield generator
    await generator.close()


async def test_completions_with_n_and_token_counts(client: VLLMGenerator,
                                                   tiny_generator: Any) -> None:
    prompts = ["hello", "def add(a, b):"]
    out = await client.generate(prompts, SamplingParams(n=2, temperature=0, max_new_tokens=6))
    local = await tiny_generator.generate(prompts, SamplingParams(n=2, temperature=0,
                                                                  max_new_tokens=6))
    assert out == local  # same model behind the double: real answers, same counts


async def test_seeded_sampling_and_stop_through_http(client: VLLMGenerator) -> None:
    params = SamplingParams(n=3, temperature=1.0, max_new_tokens=6, seed=5)
    assert await client.generate(["hello"], params) == await client.generate(["hello"], params)
    free = (await client.generate(["hello"], GREEDY))[0][0].text
    cut = (await client.generate(["hello"], SamplingParams(temperature=0, max_new_tokens=8,
                                                          stop=(free[3:6],))))[0][0]
    assert cut.text == free[:free.index(free[3:6])] and cut.finish_reason == "stop"


async def test_hot_swap_loads_versions_verifies_and_unloads_the_previous(
        client: VLLMGenerator, adapters: dict[str, Path]) -> None:
    assert await client.hot_swap(adapters["apple"]) == "policy-v1"
    assert "policy-v1" in await client.served_models()
    apple = (await client.generate(["hello"], GREEDY))[0][0]
    assert apple.adapter == "policy-v1" and "apple" in apple.text
    assert await client.hot_swap(adapters["zebra"], wait=True) == "policy-v2"
    served = await client.served_models()
    assert "policy-v2" in served and "policy-v1" not in served  # unloaded on the server too
    assert served["policy-v2"]["parent"] == SERVED
    zebra = (await client.generate(["hello"], GREEDY))[0][0]
    assert zebra.adapter == "policy-v2" and "zebra" in zebra.text
    base = (await client.generate(["hello"], GREEDY, adapter="base"))[0][0]
    assert base.text not in (apple.text, zebra.text)


async def test_a_restarted_client_adopts_the_served_versions(
        client: VLLMGenerator, double: DoubleServer, adapters: dict[str, Path]) -> None:
    await client.hot_swap(adapters["apple"])
    await client.hot_swap(adapters["zebra"], wait=True)
    fresh = VLLMGenerator(double.url, SERVED, retry=FAST_RETRY)
    await fresh.start()
    assert fresh.serving == "policy-v2" and fresh.next_version_name() == "policy-v3"
    await fresh.close()


async def test_vllm_refusals_become_clear_adapter_errors(
        client: VLLMGenerator, tiny_base: Any, smol_tokenizer: Any, tmp_path: Path) -> None:
    from tests.generation.conftest import train_lora

    with pytest.raises(AdapterError, match="No adapter found"):
        await client.load_adapter("ghost", "/nonexistent/on/this/host")  # only the server checks
    big = train_lora(tiny_base, smol_tokenizer, "x", tmp_path / "big", rank=32, steps=1)
    client.max_lora_rank = None  # let it through the client so that vLLM's rule answers
    with pytest.raises(AdapterError, match="greater than max_lora_rank 16"):
        await client.load_adapter("big", big)
    assert set(await client.served_models()) == {SERVED}
    with pytest.raises(AdapterNotFound):
        await client.generate(["hello"], GREEDY, adapter="big")


async def test_unknown_model_on_the_server_is_adapter_not_found(
        client: VLLMGenerator, adapters: dict[str, Path]) -> None:
    await client.load_adapter("apple", adapters["apple"])
    client._adopt("gone", "/x")  # the client believes in an adapter the server does not have
    with pytest.raises(AdapterNotFound, match="does not exist"):
        await client.generate(["hello"], GREEDY, adapter="gone")


async def test_server_without_runtime_lora_updating(tiny_model: Any, smol_tokenizer: Any,
                                                    adapters: dict[str, Path]) -> None:
    with _serve(tiny_model, smol_tokenizer, allow_runtime_lora_updating=False) as server:
        client = VLLMGenerator(server.url, SERVED, retry=FAST_RETRY)
        with pytest.raises(AdapterError, match="VLLM_ALLOW_RUNTIME_LORA_UPDATING"):
            await client.load_adapter("apple", adapters["apple"])
        await client.close()


async def test_transient_errors_are_retried(client: VLLMGenerator, double: DoubleServer) -> None:
    double.app.state.faults.fail_next = 2  # two 503s, then the real answer
    out = await client.generate(["hello"], GREEDY)
    assert out[0][0].completion_tokens == 8 and double.app.state.faults.fail_next == 0


async def test_persistent_errors_end_in_backend_unavailable(client: VLLMGenerator,
                                                            double: DoubleServer) -> None:
    double.app.state.faults.fail_next = 10
    with pytest.raises(BackendUnavailable, match="failed 3 times; last: HTTP 503"):
        await client.generate(["hello"], GREEDY)


async def test_slow_server_ends_in_backend_unavailable(double: DoubleServer) -> None:
    double.app.state.faults.delay_s = 1.0
    slow = VLLMGenerator(double.url, SERVED, retry=RetryPolicy(attempts=2, backoff_s=0.01,
                                                               timeout_s=0.2))
    with pytest.raises(BackendUnavailable, match="timed out"):
        await slow.generate(["hello"], GREEDY)
    await slow.close()


async def test_server_down_ends_in_backend_unavailable() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    down = VLLMGenerator(f"http://127.0.0.1:{port}", SERVED, retry=FAST_RETRY)
    started = asyncio.get_running_loop().time()
    with pytest.raises(BackendUnavailable, match="unavailable"):
        await down.start()
    assert asyncio.get_running_loop().time() - started < 5  # bounded: 3 tries, short backoff
    await down.close()


async def test_wrong_served_model_name_is_reported(double: DoubleServer) -> None:
    from service.generation import GenerationError

    wrong = VLLMGenerator(double.url, "other-model", retry=FAST_RETRY)
    with pytest.raises(GenerationError, match="does not serve 'other-model'"):
        await wrong.start()
    await wrong.close()


# -- behaviours of the pinned version (docs/GENERATION.md "Pinned vLLM") -------------------------

def _bos_tokenizer(tokenizer: Any) -> Any:
    """SmolLM2's tokenizer made to add BOS, as many models' tokenizers do."""
    import copy

    bos = copy.deepcopy(tokenizer)
    bos.add_bos_token = True
    return bos


async def test_chat_prompts_are_sent_without_added_special_tokens(
        tiny_model: Any, smol_tokenizer: Any) -> None:
    from trainer.prompts import TaskPrompt, build_prompt

    bos = _bos_tokenizer(smol_tokenizer)
    prompt = build_prompt(TaskPrompt(kind="user", instruction="Add two numbers."),
                          tokenizer=smol_tokenizer)
    assert prompt.startswith(smol_tokenizer.bos_token)  # the template already holds BOS
    as_trained = len(smol_tokenizer(prompt, add_special_tokens=False)["input_ids"])
    with _serve(tiny_model, smol_tokenizer, served_tokenizer=bos) as server:
        naive = VLLMGenerator(server.url, SERVED, retry=FAST_RETRY)
        doubled = (await naive.generate([prompt], GREEDY))[0][0]
        assert doubled.prompt_tokens == as_trained + 1  # vLLM's default adds a second BOS
        fixed = VLLMGenerator(server.url, SERVED, retry=FAST_RETRY)
        fixed.use_prompt_tokenizer(smol_tokenizer)
        sent = (await fixed.generate([prompt], GREEDY))[0][0]
        assert sent.prompt_tokens == as_trained
        assert server.app.state.requests[-1]["add_special_tokens"] is False
        assert server.app.state.requests[0]["add_special_tokens"] is True
        await naive.close()
        await fixed.close()


async def test_a_vllm_400_is_a_request_error_not_unavailable(tiny_model: Any,
                                                            smol_tokenizer: Any) -> None:
    from service.generation import GenerationError
    from service.generation.types import RequestRejected

    with _serve(tiny_model, smol_tokenizer, max_model_len=32) as server:
        client = VLLMGenerator(server.url, SERVED, retry=FAST_RETRY)
        with pytest.raises(RequestRejected, match="maximum context length is 32") as caught:
            await client.generate(["word " * 40], GREEDY)
        assert isinstance(caught.value, GenerationError | ValueError)
        assert not isinstance(caught.value, BackendUnavailable)
        assert len(server.app.state.requests) == 1  # a refusal is not retried
        await client.close()


def _mock(handler: Any) -> Any:
    import httpx

    return httpx.AsyncClient(base_url="http://vllm.test", transport=httpx.MockTransport(handler))


COMPLETION = {"id": "cmpl-1", "object": "text_completion", "created": 0, "model": SERVED,
              "choices": [{"index": 0, "text": "ok", "finish_reason": "stop",
                           "prompt_token_ids": [1, 2], "token_ids": [3]}],
              "usage": {"prompt_tokens": 2, "completion_tokens": 1, "total_tokens": 3}}


async def test_a_completion_is_not_retried_after_a_read_timeout() -> None:
    import httpx

    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        raise httpx.ReadTimeout("no answer in time", request=request)

    client = VLLMGenerator("http://vllm.test", SERVED, retry=FAST_RETRY, client=_mock(handler))
    with pytest.raises(BackendUnavailable, match="not retried"):
        await client.generate(["hello"], GREEDY)
    assert calls == ["/v1/completions"]  # once: it may be running on the server already
    calls.clear()
    with pytest.raises(BackendUnavailable, match="failed 3 times"):
        await client.served_models()  # a GET is safe to repeat
    assert calls == ["/v1/models"] * 3
    await client.close()


async def test_connection_failures_are_still_retried() -> None:
    import httpx

    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        if len(calls) < 3:
            raise httpx.ConnectError("connection refused", request=request)
        return httpx.Response(200, json=COMPLETION)

    client = VLLMGenerator("http://vllm.test", SERVED, retry=FAST_RETRY, client=_mock(handler))
    out = await client.generate(["hello"], GREEDY)
    assert out[0][0].text == "ok" and calls == ["/v1/completions"] * 3
    await client.close()


async def test_an_adapter_load_500_is_an_adapter_error(tmp_path: Path) -> None:
    import httpx

    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        return httpx.Response(500, json={"error": {
            "message": "Loading lora policy-v1 failed: bad weights", "type": "InternalServerError",
            "param": None, "code": 500}})

    client = VLLMGenerator("http://vllm.test", SERVED, retry=FAST_RETRY, client=_mock(handler))
    with pytest.raises(AdapterError, match="bad weights"):
        await client.load_adapter("policy-v1", "/only/on/the/server")
    assert calls == ["/v1/load_lora_adapter"]  # reported at once, not retried as "unreachable"
    await client.close()


async def test_the_doubles_engine_refusal_is_a_500(double: DoubleServer, tiny_base: Any,
                                                   smol_tokenizer: Any, tmp_path: Path) -> None:
    import httpx

    from tests.generation.conftest import train_lora

    big = train_lora(tiny_base, smol_tokenizer, "x", tmp_path / "big", rank=32, steps=1)
    async with httpx.AsyncClient(base_url=double.url) as http:
        answer = await http.post("/v1/load_lora_adapter",
                                 json={"lora_name": "big", "lora_path": str(big)})
        missing = await http.post("/v1/load_lora_adapter",
                                  json={"lora_name": "x", "lora_path": "/nowhere"})
    assert answer.status_code == 500
    assert answer.json()["error"]["type"] == "InternalServerError"
    assert missing.status_code == 404


async def test_streaming_passes_vllms_chunks_through(client: VLLMGenerator,
                                                     double: DoubleServer) -> None:
    params = SamplingParams(n=2, temperature=0, max_new_tokens=6)
    whole = await client.generate(["hello", "def f("], params)
    texts: dict[int, str] = {}
    final = None
    async for event in client.stream(["hello", "def f("], params):
        if isinstance(event, list):
            final = event
        else:
            texts[event[0]] = texts.get(event[0], "") + event[1]
    assert final == whole
    assert [texts.get(i, "") for i in range(4)] == [c.text for per in whole for c in per]
    assert double.app.state.requests[-1]["stream"] is True


# -- several replicas ----------------------------------------------------------------------------

@pytest.fixture
def two_doubles(tiny_base: Any, smol_tokenizer: Any) -> Iterator[list[DoubleServer]]:
    import copy

    with _serve(copy.deepcopy(tiny_base), smol_tokenizer, max_lora_rank=16) as a, \
            _serve(copy.deepcopy(tiny_base), smol_tokenizer, max_lora_rank=16) as b:
        yield [a, b]


async def test_replicas_share_adapters_and_work(two_doubles: list[DoubleServer],
                                                adapters: dict[str, Path]) -> None:
    a, b = two_doubles
    retry = RetryPolicy(attempts=2, backoff_s=0.01, timeout_s=30.0, recheck_s=0.2)
    client = VLLMGenerator([a.url, b.url], SERVED, retry=retry, max_lora_rank=16)
    await client.start()
    assert await client.hot_swap(adapters["apple"]) == "policy-v1"
    for server in two_doubles:
        async with _http(server) as http:
            assert "policy-v1" in {m["id"] for m in (await http.get("/v1/models")).json()["data"]}
    outs = [(await client.generate(["hello"], GREEDY))[0][0] for _ in range(4)]
    assert len({o.text for o in outs}) == 1 and outs[0].adapter == "policy-v1"
    assert a.app.state.requests and b.app.state.requests  # spread over both
    assert {r["model"] for r in a.app.state.requests + b.app.state.requests} == {"policy-v1"}

    b.app.state.faults.fail_next, b.app.state.faults.status = 10_000, 503  # b goes down
    for _ in range(3):
        assert (await client.generate(["hello"], GREEDY))[0][0].text == outs[0].text
    assert await client.hot_swap(adapters["zebra"], wait=True) == "policy-v2"  # a alone
    assert not client.replicas[1].up

    b.app.state.faults.fail_next = 0  # b is back: brought in line before it serves again
    await asyncio.sleep(0.3)
    for _ in range(4):
        zebra = (await client.generate(["hello"], GREEDY))[0][0]
        assert zebra.adapter == "policy-v2"
    assert client.replicas[1].up
    async with _http(b) as http:
        served = {m["id"] for m in (await http.get("/v1/models")).json()["data"]}
    assert served == {SERVED, "policy-v2"}  # v2 loaded there, v1 unloaded
    assert b.app.state.requests[-1]["model"] == "policy-v2"
    await client.close()


async def test_every_replica_down_is_backend_unavailable(two_doubles: list[DoubleServer]) -> None:
    a, b = two_doubles
    client = VLLMGenerator([a.url, b.url], SERVED, retry=FAST_RETRY)
    await client.start()
    for server in two_doubles:
        server.app.state.faults.fail_next = 10_000
    with pytest.raises(BackendUnavailable, match="no vLLM replica of 2 answered"):
        await client.generate(["hello"], GREEDY)
    await client.close()


def _http(server: DoubleServer) -> Any:
    import httpx

    return httpx.AsyncClient(base_url=server.url)
