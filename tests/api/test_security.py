"""The API key: required on state-changing endpoints when set, refused when a placeholder outside
development, and never visible to the programs the sandbox runs."""

from __future__ import annotations

import logging

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from service.api.app import create_app
from service.core.config import Settings

KEY = "k3y-for-tests-0123456789abcdef"
STATE_CHANGING = [("POST", "/v1/evaluate", {"programs": ["x = 1"], "tests": ["assert x == 1"]}),
                  ("POST", "/v1/feedback", {"sample_id": "s", "thumb": "up"}),
                  ("POST", "/v1/generate", {"instruction": "say hi"}),
                  ("POST", "/v1/tasks", {"instruction": "say hi"})]


@pytest.fixture
def keyed(settings_for, monkeypatch: pytest.MonkeyPatch) -> TestClient:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("LETI_API_KEY", KEY)  # as an operator would set it
    settings = settings_for(load_humaneval=False)
    settings = settings.model_copy(update={"api_key": Settings(_env_file=None).api_key})
    with TestClient(create_app(settings)) as client:
        yield client


def test_state_changing_endpoints_need_the_key(keyed: TestClient) -> None:
    for method, path, body in STATE_CHANGING:
        for headers in ({}, {"X-API-Key": "wrong"}):
            response = keyed.request(method, path, json=body, headers=headers)
            assert response.status_code == 401, (path, headers, response.text)
            assert "X-API-Key" in response.json()["detail"]
    ok = keyed.post("/v1/evaluate", json=STATE_CHANGING[0][2], headers={"X-API-Key": KEY})
    assert ok.status_code == 200 and ok.json()["results"][0]["status"] == "passed"


def test_reading_needs_no_key(keyed: TestClient) -> None:
    for path in ("/healthz", "/v1/tasks", "/v1/triples", "/v1/triples/export", "/metrics",
                 "/openapi.json"):
        assert keyed.get(path).status_code == 200, path


def test_programs_never_see_the_key(keyed: TestClient) -> None:
    """The program searches its environment and every /proc entry it can read for the key."""
    program = (
        "import os\n"
        "def leaked(key):\n"
        "    if any(key in v for v in os.environ.values()):\n"
        "        return 'environ'\n"
        "    for pid in os.listdir('/proc'):\n"
        "        for name in ('environ', 'cmdline'):\n"
        "            try:\n"
        "                with open(f'/proc/{pid}/{name}', 'rb') as fh:\n"
        "                    if key.encode() in fh.read():\n"
        "                        return f'/proc/{pid}/{name}'\n"
        "            except OSError:\n"
        "                pass\n"
        "    return None\n")
    response = keyed.post("/v1/evaluate", headers={"X-API-Key": KEY}, json={
        "programs": [program], "tests": [f"assert leaked({KEY!r}) is None",
                                         "assert leaked('LETI_API_KEY') is None"]})
    result = response.json()["results"][0]
    assert result["status"] == "passed", result["feedback"]


@pytest.mark.parametrize("key", ["changeme", "CHANGETHIS", "secret", "short-key"])
def test_placeholder_keys_are_refused_in_production(key: str) -> None:
    with pytest.raises(ValidationError, match="LETI_API_KEY"):
        Settings(_env_file=None, environment="production", api_key=key)  # type: ignore[call-arg]


def test_production_without_a_key_is_refused() -> None:
    with pytest.raises(ValidationError, match="not set"):
        Settings(_env_file=None, environment="production", api_key=None)  # type: ignore[call-arg]


def test_development_only_warns(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        Settings(_env_file=None, environment="development", api_key="changeme")  # type: ignore[call-arg]
    assert "placeholder" in caplog.text
    Settings(_env_file=None, environment="production", api_key=KEY)  # type: ignore[call-arg]


def test_settings_come_from_the_environment_and_a_dotenv_file(
        tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("LETI_MAX_N=3\nLETI_PORT=9001\n")
    monkeypatch.setenv("LETI_PORT", "9002")  # the environment wins over the file
    settings = Settings()
    assert (settings.max_n, settings.port) == (3, 9002)
    assert settings.resolved_database_url.startswith("sqlite:///")
    assert settings.resolved_database_url.endswith("/leti.db")
