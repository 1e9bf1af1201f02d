"""Fuzz every operation of the OpenAPI schema (schemathesis) against a live server: no input may
produce a 500, and every answer must match the schema. The generator is the real embedded backend
on a tiny random model, the sandbox the local one, the store a real SQLite file."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

schemathesis = pytest.importorskip("schemathesis")

from hypothesis import HealthCheck, settings

from service.api.app import create_app
from service.core.config import Settings
from tests.api.conftest import LiveServer, make_settings

KEY = "fuzzing-key-0123456789abcdef"


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, mbpp_path: Path,
         tiny_model_dir: Path) -> Iterator[LiveServer]:
    app_settings = make_settings(
        tmp_path_factory.mktemp("data"), mbpp_path, generator_backend="embedded",
        generator_model=str(tiny_model_dir), api_key=KEY, max_n=2, max_new_tokens=8,
        max_programs=4, sandbox_timeout_s=2.0, max_body_bytes=64 * 1024)
    with LiveServer(create_app(app_settings)) as server:
        yield server


# Schema-valid requests may still be refused by rules a schema cannot say (413: over a
# configured limit; 422: "exactly one of", a test that does not compile; 404: an unknown id);
# a 413 is also a correct refusal of an oversized, schema-violating body; the OpenAI-compatible
# routes answer such refusals with 400, as OpenAI does. A 5xx never is.
CONFIG = schemathesis.Config.from_dict({"checks": {
    "positive_data_acceptance": {"expected-statuses": ["2xx", "400", "401", "404", "409", "413",
                                                       "422"]},
    "negative_data_rejection": {"expected-statuses": ["400", "401", "404", "405", "409", "413",
                                                      "422"]},
}})
# The schema does not depend on settings, so it is read from an app that is never started
# (schemathesis' lazy fixture loader does not work with pytest 9).
OPENAPI = create_app(Settings(_env_file=None, generator_backend="none")).openapi()  # type: ignore[call-arg]
schema = schemathesis.openapi.from_dict(OPENAPI, config=CONFIG)

# The answers the fuzzer checks that were untyped dicts once: each names its model.
TYPED_ANSWERS = {("get", "/v1/loop"): ("200", "LoopStatus"),
                 ("post", "/v1/loop/start"): ("200", "LoopStatus"),
                 ("post", "/v1/loop/stop"): ("200", "LoopStatus"),
                 ("post", "/v1/train"): ("202", "TrainingStarted"),
                 ("get", "/v1/train/{run_id}"): ("200", "TrainingRunOut"),
                 ("get", "/v1/adapters"): ("200", "AdapterList"),
                 ("post", "/v1/adapters/rollback"): ("200", "DecisionOut"),
                 ("post", "/v1/adapters/{name}/promote"): ("200", "DecisionOut")}


@pytest.mark.parametrize(("method", "path"), list(TYPED_ANSWERS))
def test_the_loop_train_and_adapters_answers_are_typed(method: str, path: str) -> None:
    code, model = TYPED_ANSWERS[(method, path)]
    answer = OPENAPI["paths"][path][method]["responses"][code]
    assert answer["content"]["application/json"]["schema"] == \
        {"$ref": f"#/components/schemas/{model}"}


@schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_input_produces_a_server_error(case, live: LiveServer) -> None:  # type: ignore[no-untyped-def]
    case.call_and_validate(base_url=live.url, headers={"X-API-Key": KEY})
