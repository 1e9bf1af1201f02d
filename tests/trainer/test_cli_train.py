"""``leti train`` as people and the service run it: exit codes, JSON-line events on stdout."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from trainer.cli import app


def run(*args: str):
    return CliRunner().invoke(app, ["train", *args])


def test_train_writes_adapter_and_streams_events_on_stdout(tiny_model: Path, triples_file: Path,
                                                          tmp_path: Path) -> None:
    code = tmp_path / "code"
    code.mkdir()
    (code / "m.py").write_text("def f(x):\n    return x\n" * 20)
    result = run("--data", str(triples_file), "--output", str(tmp_path / "run"),
                 "--base-model", str(tiny_model), "--rank", "8", "--max-steps", "2",
                 "--batch-size", "2", "--code-corpus", str(code), "--code-block-size", "32",
                 "--events", "-", "--no-progress")
    assert result.exit_code == 0, result.output
    events = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert [e["event"] for e in events] == ["start", "step", "step", "eval", "done"]
    assert Path(events[-1]["adapter"], "adapter_model.safetensors").is_file()


def test_bad_input_exits_2_with_the_fix_in_the_message(tmp_path: Path) -> None:
    result = run("--data", str(tmp_path / "missing.jsonl"), "--output", str(tmp_path / "r"))
    assert result.exit_code == 2 and "leti triples export" in result.output
    result = run("--data", str(tmp_path / "missing.jsonl"), "--rank", "12")
    assert result.exit_code == 2 and "vLLM" in result.output


def test_truncated_flag_reaches_the_reader(tiny_model: Path, tmp_path: Path,
                                           monkeypatch) -> None:
    from tiny_models import triple

    monkeypatch.setenv("LETI_TRAIN_TRUNCATED", "drop")  # the flag wins over the environment
    data = tmp_path / "t.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in [
        triple(1, "def add1(x):\n    return x + 1", "good", "All 1 tests passed."),
        triple(3, "def add3(x):\n    return (((", "bad", "SyntaxError", finish_reason="length")]))
    result = run("--data", str(data), "--output", str(tmp_path / "run"),
                 "--base-model", str(tiny_model), "--rank", "8", "--max-steps", "1",
                 "--code-ratio", "0", "--truncated", "mark", "--no-progress")
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["data"]["marked"] == 1 and metrics["data"]["triples"] == 2
    result = run("--data", str(data), "--output", str(tmp_path / "r2"), "--truncated", "x")
    assert result.exit_code == 2 and "truncated='x'" in result.output
