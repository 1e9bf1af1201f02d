"""Hand-made results (results.json as the study writes it) for the report's tests."""

from __future__ import annotations

from typing import Any

from service.experiment.results import StudyResults


def evaluation(
    arm: str, round_: int, benchmark: str, passed: int, *, n_tasks: int = 20,
    feedback_steps: int | None = 8,
) -> dict[str, Any]:
    """``n_tasks`` tasks with one sample each; the first ``passed`` of them pass."""
    prefix = "HumanEval/" if benchmark == "humaneval" else ""
    tasks = {
        f"{benchmark}/{prefix}{i}": {
            "passed": [i < passed],
            "statuses": ["passed" if i < passed else "failed"],
            "error_types": [None if i < passed else "AssertionError"],
        }
        for i in range(n_tasks)
    }
    key = f"base/{benchmark}" if arm == "base" else f"{arm}-r{round_}/{benchmark}"
    return {
        "key": key, "arm": arm, "round": round_, "feedback_steps": feedback_steps,
        "benchmark": benchmark, "split": "test", "adapter": None if arm == "base" else "policy-v1",
        "n": 1, "temperature": 0.0, "seed": 7, "wall_s": 120.0, "tasks": tasks,
        "pass_at_k": {"pass@1": passed / n_tasks},
    }


def round_record(r: int) -> dict[str, Any]:
    return {
        "round": r, "problems": [f"mbpp/{600 + i}" for i in range(12)], "samples": 96,
        "passed": 3 * r,
        "statuses": {"passed": 3 * r, "failed": 40, "error": 33 - 3 * r, "syntax_error": 20,
                     "timeout": 3},
        "error_types": {"NameError": 10, "AssertionError": 40, "TypeError": 5 + r},
        "adapter_sampled": None if r == 1 else f"policy-v{r - 1}", "candidate": f"policy-v{r}",
        "training": {"steps": 16, "feedback_steps": 8, "loss_first": 1.2, "loss_last": 0.9,
                     "tokens": 12000},
        "gate": {"decision": "promote", "candidate_pass_at_1": 0.1 * r,
                 "serving_pass_at_1": 0.1 * (r - 1), "reason": "better"},
        "serving_after": f"policy-v{r}",
        "timings_s": {"sampling": 100.0, "execution": 3.0, "training": 300.0, "gate": 50.0,
                      "evaluation": 120.0},
    }


def full_results() -> dict[str, Any]:
    return {
        "schema": 1,
        "name": "cpu-small",
        "config": {"model": {"name": "SmolLM2-135M-Instruct", "backend": "embedded"}, "seed": 7,
                   "loop": {"rounds": 2, "problems_per_round": 12}, "sampling": {"n": 4,
                   "temperature": 0.8}, "evaluation": {"n": 1, "temperature": 0.0,
                   "seed": 1234}, "data": {"test_problems": 20, "humaneval_problems": 0}},
        "environment": {
            "machine": {"cpu": "test-cpu", "cores": 2}, "versions": {"torch": "2.13.0"},
            "started_at": "2026-01-01T00:00:00Z", "finished_at": "2026-01-01T02:00:00Z",
            "wall_s": 7200.0,
        },
        "evaluations": [
            evaluation("base", 0, "mbpp", 2, feedback_steps=None),
            evaluation("base", 0, "humaneval", 3, feedback_steps=None),
            evaluation("leti", 1, "mbpp", 10),
            evaluation("leti", 2, "mbpp", 17),  # 15 more than the baseline
            evaluation("leti", 2, "humaneval", 3),  # the same as the baseline
            evaluation("binary", 1, "mbpp", 10),  # same as leti-r1: no difference
        ],
        "rounds": [round_record(1), round_record(2)],
        "ablations": [
            {"name": "binary", "objective": "binary", "code_ratio": 1.0, "feedback_steps": 8,
             "data_round": 1, "evaluation": "binary-r1/mbpp", "compare_to": "leti-r1/mbpp",
             "training": None, "timings_s": {"training": 300.0, "evaluation": 120.0}},
            {"name": "no-corpus", "objective": "leti", "code_ratio": 0.0, "feedback_steps": 8,
             "data_round": 1, "evaluation": "no-corpus-r1/mbpp",  # never evaluated: skipped
             "compare_to": "leti-r1/mbpp", "training": None, "timings_s": {}},
        ],
    }


def partial_results() -> dict[str, Any]:
    results = full_results()
    results["environment"]["finished_at"] = None
    results["evaluations"] = results["evaluations"][:1]
    results["rounds"] = []
    results["ablations"] = []
    return results


def load(raw: dict[str, Any]) -> StudyResults:
    """The records the report reads, from results.json's content."""
    return StudyResults.from_json(raw)
