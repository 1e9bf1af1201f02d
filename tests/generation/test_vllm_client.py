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


def _serve(tiny_model: Any, tokenizer: Any, **options: Any) -> DoubleServer:
    from service.generation.embedded import EmbeddedGenerator
    from service.generation.vllm_double import create_app

    generator = EmbeddedGenerator(tiny_model, tokenizer, max_lora_rank=None)
    return DoubleServer(create_app(generator, SERVED, **options))


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
