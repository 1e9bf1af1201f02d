"""POST /v1/feedback: every kind of feedback, stored as given and normalised into one record."""

from __future__ import annotations

import math

import pytest
from fastapi.testclient import TestClient

from service.core.feedback import Feedback, FeedbackError, Scaled, normalise


def _sample(client: TestClient, program: str = "def add(a, b): return a - b") -> str:
    response = client.post("/v1/evaluate", json={"programs": [program],
                                                 "tests": ["assert add(1, 2) == 3"],
                                                 "instruction": "Add two numbers."})
    return response.json()["results"][0]["sample_id"]


def _unexecuted_sample(client: TestClient) -> str:
    from service.store.samples import NewSample, add_samples

    with client.app.state.services.store.write() as session:  # type: ignore[attr-defined]
        return add_samples(session, [NewSample("mbpp/11", "x = 1", origin="generated")])[0].id


@pytest.mark.parametrize(("body", "label", "score"), [
    ({"thumb": "up"}, "good", 1.0),
    ({"thumb": "down"}, "bad", 0.0),
    ({"score": {"value": 7, "min": 0, "max": 10}}, "good", 0.7),
    ({"score": {"value": 2, "min": 1, "max": 5}}, "bad", 0.25),
    ({"ratings": {"correctness": {"value": 5, "min": 1, "max": 5},
                  "style": {"value": 1, "min": 1, "max": 5, "weight": 3}}}, "bad", 0.25),
    ({"thumb": "up", "score": {"value": 4, "max": 10}, "text": "fine but slow"}, "good", 0.7),
])
def test_each_kind_and_mixes_normalise_to_label_score_text(client: TestClient, body: dict,
                                                           label: str, score: float) -> None:
    sample_id = _sample(client)
    response = client.post("/v1/feedback", json={"sample_id": sample_id, **body})
    assert response.status_code == 201, response.text
    out = response.json()
    assert out["label"] == label and math.isclose(out["score"], score) and out["triple"]
    stored = client.get(f"/v1/samples/{sample_id}").json()["feedback"]
    assert stored[-1]["raw"] == {"sample_id": sample_id, **body}  # kept exactly as given
    assert stored[-1]["label"] == label and stored[-1]["id"] == out["feedback_id"]


def test_text_explains_the_numbers(client: TestClient) -> None:
    sample_id = _sample(client)
    out = client.post("/v1/feedback", json={
        "sample_id": sample_id, "text": "Subtracts instead of adding.",
        "score": {"value": 1, "max": 10},
        "ratings": {"readability": {"value": 4, "min": 1, "max": 5}}}).json()
    assert out["text"] == ("Subtracts instead of adding.\n"
                           "Score: 1/10. Ratings: readability 4 on [1, 5].")
    assert out["components"] == {"score": 0.1, "ratings": 0.75}


def test_text_alone_takes_the_label_of_the_sandbox_run(client: TestClient) -> None:
    sample_id = _sample(client)  # it failed in the sandbox
    out = client.post("/v1/feedback", json={"sample_id": sample_id,
                                            "text": "Use + not -."}).json()
    assert (out["label"], out["score"], out["text"], out["triple"]) == \
        ("bad", 0.0, "Use + not -.", True)
    triple = client.get("/v1/triples", params={"sample_id": sample_id,
                                               "source": "external"}).json()["items"][-1]
    assert (triple["feedback"], triple["status"], triple["reward"]) == \
        ("Use + not -.", "failed", "bad")


def test_text_alone_on_a_sample_that_never_ran_is_kept_but_not_a_triple(
        client: TestClient) -> None:
    sample_id = _unexecuted_sample(client)
    out = client.post("/v1/feedback", json={"sample_id": sample_id, "text": "hmm"}).json()
    assert out["label"] is None and out["score"] is None and out["triple"] is False
    assert client.get("/v1/triples", params={"sample_id": sample_id}).json()["items"] == []


def test_external_feedback_on_a_sample_that_never_ran_has_no_status(client: TestClient) -> None:
    sample_id = _unexecuted_sample(client)
    client.post("/v1/feedback", json={"sample_id": sample_id, "thumb": "up"})
    (triple,) = client.get("/v1/triples", params={"sample_id": sample_id}).json()["items"]
    assert (triple["source"], triple["status"], triple["reward"], triple["score"]) == \
        ("external", None, "good", 1.0)


def test_inconsistent_feedback_is_refused_with_the_reason(client: TestClient) -> None:
    sample_id = _sample(client)
    cases = [
        ({"sample_id": "missing", "thumb": "up"}, 404, "no sample"),
        ({"sample_id": sample_id}, 422, "at least one of"),
        ({"sample_id": sample_id, "score": {"value": 11, "max": 10}}, 422, "outside its range"),
        ({"sample_id": sample_id, "score": {"value": 1, "min": 5, "max": 5}}, 422, "empty"),
        ({"sample_id": sample_id, "thumb": "sideways"}, 422, "thumb"),
        ({"sample_id": sample_id, "ratings": {"": {"value": 1, "max": 2}}}, 422, "pattern"),
        ({"sample_id": sample_id, "text": "a\u0000b"}, 422, "NUL"),
    ]
    for body, status, words in cases:
        response = client.post("/v1/feedback", json=body)
        assert response.status_code == status, (body, response.text)
        assert words in str(response.json()["detail"]), (body, response.text)


def test_non_finite_numbers_are_refused(client: TestClient) -> None:
    sample_id = _sample(client)
    body = f'{{"sample_id": "{sample_id}", "score": {{"value": NaN, "max": 10}}}}'
    response = client.post("/v1/feedback", content=body,
                           headers={"content-type": "application/json"})
    assert response.status_code == 422


def test_normalise_weights_ratings_and_averages_signals() -> None:
    record = normalise(Feedback(thumb="down", ratings={
        "a": Scaled(10, 0, 10, weight=1), "b": Scaled(0, 0, 10, weight=3)}), threshold=0.5)
    assert record.components == {"thumb": 0.0, "ratings": 0.25}
    assert record.score == 0.125 and record.label == "bad"
    assert normalise(Feedback(score=Scaled(5, 0, 10)), threshold=0.5).label == "good"
    assert normalise(Feedback(score=Scaled(5, 0, 10)), threshold=0.6).label == "bad"
    with pytest.raises(FeedbackError, match="outside"):
        normalise(Feedback(score=Scaled(-1, 0, 10)))
