"""GET /v1/triples (filters, cursor pagination) and /v1/triples/export (the trainer's input)."""

from __future__ import annotations

import json
from pathlib import Path

from fastapi.testclient import TestClient

from service.store.triples import CONTRACT_FIELDS

ADD = {"tests": ["assert add(1, 2) == 3"], "instruction": "Write a function to add two numbers."}


def _seed(client: TestClient) -> list[str]:
    results = client.post("/v1/evaluate", json={
        "programs": ["def add(a, b): return a + b", "def add(a, b): return a - b",
                     "def add(a, b): return b + a"], **ADD}).json()["results"]
    client.post("/v1/feedback", json={"sample_id": results[1]["sample_id"], "thumb": "down",
                                      "text": "subtracts"})
    return [r["sample_id"] for r in results]


def test_pages_follow_the_cursor_without_gaps_or_repeats(client: TestClient) -> None:
    _seed(client)
    everything = client.get("/v1/triples", params={"limit": 1000}).json()
    assert everything["next_cursor"] is None
    seen, cursor = [], None
    while True:
        params = {"limit": 2} | ({"cursor": cursor} if cursor is not None else {})
        page = client.get("/v1/triples", params=params).json()
        seen += [t["id"] for t in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [t["id"] for t in everything["items"]] == sorted(set(seen))


def test_filters_narrow_the_listing(client: TestClient) -> None:
    ids = _seed(client)
    good = client.get("/v1/triples", params={"reward": "good", "limit": 1000}).json()["items"]
    assert good and all(t["reward"] == "good" for t in good)
    external = client.get("/v1/triples", params={"source": "external",
                                                 "sample_id": ids[1]}).json()["items"]
    assert [(t["source"], t["reward"], t["feedback"]) for t in external] == \
        [("external", "bad", "subtracts")]
    assert client.get("/v1/triples", params={"kind": "humaneval"}).json()["items"] == []
    assert client.get("/v1/triples", params={"reward": "maybe"}).status_code == 422


def test_bare_programs_without_an_instruction_are_not_triples(client: TestClient) -> None:
    result = client.post("/v1/evaluate", json={"programs": ["x = 1"],
                                               "tests": ["assert x == 1"]}).json()["results"][0]
    assert result["status"] == "passed"
    assert client.get("/v1/triples", params={"sample_id": result["sample_id"]}).json()[
        "items"] == []


def test_export_streams_exactly_the_contract_and_the_trainer_reads_it(
        client: TestClient, tmp_path: Path) -> None:
    from trainer.data import Triple, leti_example, read_triples

    before = int(client.get("/v1/triples/export").headers["x-triples-upto"])
    ids = _seed(client)
    response = client.get("/v1/triples/export", params={"task_id": _task_of(client, ids[0]),
                                                        "cursor": before})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in response.text.splitlines()]
    assert len(lines) == 4 and all(tuple(line) == CONTRACT_FIELDS for line in lines)
    first = lines[0]
    assert first["kind"] == "user" and first["tests"] == ADD["tests"]
    assert first["program"] == "def add(a, b): return a + b" and first["reward"] == "good"
    assert first["source"] == "sandbox" and first["status"] == "passed"

    path = tmp_path / "triples.jsonl"
    path.write_text(response.text)
    triples = read_triples(path)
    assert [t.sample_id for t in triples] == [line["sample_id"] for line in lines]
    bad: Triple = next(t for t in triples if t.source == "external")
    example = leti_example(bad)
    assert example.prompt.startswith("Reward: bad\nFeedback:\nsubtracts\n")
    assert "def add(a, b): return a - b" in example.completion


def test_export_continues_after_its_upto_header(client: TestClient) -> None:
    _seed(client)
    first = client.get("/v1/triples/export")
    upto = int(first.headers["x-triples-upto"])
    assert json.loads(first.text.splitlines()[-1])  # non-empty
    assert client.get("/v1/triples/export", params={"cursor": upto}).text == ""
    new = _seed(client)
    later = [json.loads(x) for x in
             client.get("/v1/triples/export", params={"cursor": upto}).text.splitlines()]
    assert {t["sample_id"] for t in later} == set(new)


def _task_of(client: TestClient, sample_id: str) -> str:
    return client.get(f"/v1/samples/{sample_id}").json()["task_id"]
