"""Interleaving of code and feedback steps, seeded resumable streams, and padding."""

from __future__ import annotations

import pytest

from trainer.batches import IGNORE_INDEX, Encoded, ExampleStream, collate, step_kind, total_steps


def kinds(ratio: float, n: int) -> str:
    return "".join("C" if step_kind(s, ratio) == "code" else "F" for s in range(n))


def test_default_ratio_alternates_one_to_one() -> None:
    assert kinds(1.0, 8) == "FCFCFCFC"


@pytest.mark.parametrize("ratio,pattern", [(2.0, "FCC"), (0.5, "FFC"), (3.0, "FCCC"),
                                           (0.25, "FFFFC")])
def test_ratio_is_spread_evenly(ratio: float, pattern: str) -> None:
    assert kinds(ratio, len(pattern) * 5) == pattern * 5


@pytest.mark.parametrize("ratio", [0.0, 0.3, 1.0, 1.5, 2.0, 4.0])
def test_code_steps_per_feedback_step_match_ratio(ratio: float) -> None:
    seq = kinds(ratio, 1200)
    assert seq.count("C") == pytest.approx(ratio * seq.count("F"), abs=1 + ratio)  # a partial
    # cycle at the end is the only slack


@pytest.mark.parametrize("ratio", [0.0, 0.5, 1.0, 2.0, 0.3])
@pytest.mark.parametrize("feedback", [1, 2, 7, 50])
def test_total_steps_holds_exactly_the_feedback_steps(ratio: float, feedback: int) -> None:
    steps = total_steps(feedback, ratio)
    assert kinds(ratio, steps).count("F") == feedback
    assert kinds(ratio, steps - 1).count("F") == feedback - 1  # and no extra step


def enc(i: int, n: int = 3) -> Encoded:
    return Encoded(tuple([i] * n), tuple([i] * n), "leti")


def test_stream_visits_every_example_once_per_epoch_in_seeded_order() -> None:
    examples = [enc(i) for i in range(10)]
    a = ExampleStream(examples, seed=3)
    first = [e.input_ids[0] for _ in range(5) for e in a.next_batch(2)]
    assert sorted(first) == list(range(10)) and first != list(range(10))
    b = ExampleStream(examples, seed=3)
    assert [e.input_ids[0] for _ in range(5) for e in b.next_batch(2)] == first


def test_stream_state_resumes_at_the_same_batch() -> None:
    examples = [enc(i) for i in range(7)]
    a = ExampleStream(examples, seed=1)
    for _ in range(5):
        a.next_batch(3)  # crosses an epoch boundary
    b = ExampleStream(examples, seed=1)
    b.load_state(a.state())
    assert [a.next_batch(3) for _ in range(4)] == [b.next_batch(3) for _ in range(4)]


def test_data_parallel_ranks_split_the_same_global_batch() -> None:
    examples = [enc(i) for i in range(12)]
    single = ExampleStream(examples, seed=0, world_size=1).next_batch(4)
    ranks = [ExampleStream(examples, seed=0, rank=r, world_size=2).next_batch(2) for r in (0, 1)]
    assert sorted(e.input_ids[0] for e in ranks[0] + ranks[1]) == \
        sorted(e.input_ids[0] for e in single)
    assert not {e.input_ids[0] for e in ranks[0]} & {e.input_ids[0] for e in ranks[1]}


def test_collate_pads_right_without_attention_or_loss() -> None:
    batch = collate([enc(5, 2), Encoded((7, 8, 9), (IGNORE_INDEX, 8, 9), "leti")], pad_id=0)
    assert batch["input_ids"].tolist() == [[5, 5, 0], [7, 8, 9]]
    assert batch["attention_mask"].tolist() == [[1, 1, 0], [1, 1, 1]]
    assert batch["labels"].tolist() == [[5, 5, IGNORE_INDEX], [IGNORE_INDEX, 8, 9]]
