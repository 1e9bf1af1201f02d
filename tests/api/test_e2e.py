"""End to end over HTTP with the real embedded model (SmolLM2-135M-Instruct) and the local sandbox:
generate for an MBPP task, evaluate, attach feedback of every kind, export the triples, and read
them back with the trainer's own reader into the sequences it trains on."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from service.api.app import create_app
from tests.api.conftest import LiveServer, make_settings

pytestmark = [pytest.mark.model, pytest.mark.slow]
TASK = "mbpp/654"  # "Write a function to find the perimeter of a rectangle." (train split:
# only train-split and user tasks are ever exported for training)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, mbpp_path: Path) -> Iterator[LiveServer]:
    pytest.importorskip("torch")
    settings = make_settings(tmp_path_factory.mktemp("data"), mbpp_path,
                             generator_backend="embedded", load_humaneval=False)
    with LiveServer(create_app(settings)) as live:
        yield live


def test_generate_evaluate_feedback_export_and_train_on_it(server: LiveServer,
                                                           tmp_path: Path) -> None:
    from trainer.data import feedback_examples, read_triples
    from trainer.prompts import Reward, TaskPrompt, build_prompt

    http = server.client()
    task = http.get(f"/v1/tasks/{TASK}").json()

    generated = http.post("/v1/generate", json={
        "task_id": TASK, "n": 2, "sampling": {"temperature": 0.7, "max_new_tokens": 128,
                                              "seed": 1}})
    assert generated.status_code == 200, generated.text
    out = generated.json()
    assert out["model"] == "SmolLM2-135M-Instruct" and len(out["samples"]) == 2
    samples = out["samples"]
    assert all(s["completion"] and s["completion_tokens"] > 0 for s in samples)

    evaluated = http.post("/v1/evaluate", json={"sample_ids": [s["id"] for s in samples]})
    assert evaluated.status_code == 200, evaluated.text
    results = evaluated.json()["results"]
    assert [r["sample_id"] for r in results] == [s["id"] for s in samples]
    for result in results:
        assert result["tests_total"] == 3 and result["feedback"]
        assert result["reward"] == ("good" if result["status"] == "passed" else "bad")

    first, second = (s["id"] for s in samples)
    kinds = [{"thumb": "down"},
             {"score": {"value": 3, "min": 1, "max": 5}},
             {"ratings": {"correctness": {"value": 1, "max": 4},
                          "style": {"value": 4, "max": 4}}},
             {"text": "Multiply the side by four."},
             {"thumb": "up", "score": {"value": 9, "max": 10}, "text": "Nice and short."}]
    for body in kinds:
        response = http.post("/v1/feedback", json={"sample_id": first, **body})
        assert response.status_code == 201, response.text
        assert response.json()["triple"] is True
    http.post("/v1/feedback", json={"sample_id": second, "thumb": "up"})

    export = http.get("/v1/triples/export", params={"task_id": TASK})
    assert export.status_code == 200
    path = tmp_path / "triples.jsonl"
    path.write_text(export.text)

    # the trainer's reader validates every field (and here keeps programs cut at the token
    # limit, which it drops by default: this checks the round trip of every record)
    triples = read_triples(path, truncated="keep")
    assert len(triples) == 2 + len(kinds) + 1
    assert {t.sample_id for t in triples} == {first, second}
    by_source = {s: [t for t in triples if t.source == s] for s in ("sandbox", "external")}
    assert len(by_source["sandbox"]) == 2 and len(by_source["external"]) == len(kinds) + 1
    for triple in triples:
        assert triple.task_id == TASK and triple.kind == "mbpp"
        assert triple.instruction == task["instruction"] and triple.tests == tuple(task["tests"])
        assert triple.program == next(s["program"] for s in samples if s["id"] == triple.sample_id)
        assert triple.reference == task["reference"] and triple.adapter is None
        assert 0.0 <= triple.score <= 1.0
    texts = [t.feedback for t in by_source["external"]]
    assert "Multiply the side by four." in texts
    assert "Nice and short.\nScore: 9/10." in texts

    # The trainer builds its sequences from these with the model's own tokenizer; the prompt
    # of a "good" example is exactly what the generator samples from after LETI training.
    tokenizer = server.server.config.app.state.services.generation.tokenizer
    examples = feedback_examples(triples, "leti", tokenizer=tokenizer)
    assert len(examples) == len(triples)
    good = next(e for e, t in zip(examples, triples, strict=True) if t.reward is Reward.GOOD)
    task_prompt = TaskPrompt("mbpp", task["instruction"], tuple(task["tests"]))
    assert good.prompt == build_prompt(task_prompt, reward=Reward.GOOD, tokenizer=tokenizer)
    assert good.completion.startswith("```python\n")
