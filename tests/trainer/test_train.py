"""The training loop end to end on a tiny random model: outputs, interleaving, seeds, resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

from trainer.config import LetiConfig
from trainer.data import DatasetError, file_sha256
from trainer.events import read_events
from trainer.train import train

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def code_dir(tmp_path: Path) -> Path:
    """A small code corpus so tests do not tokenise the whole stdlib."""
    root = tmp_path / "code"
    root.mkdir()
    for i in range(5):
        (root / f"m{i}.py").write_text(f"def f{i}(x):\n    return [x * {i} for _ in range(3)]\n")
    return root


def config(tiny_model: Path, data: Path, out: Path, **kw: object) -> LetiConfig:
    # max_steps only bounds a run sized by its epochs: many epochs let it decide the length
    settings: dict = {"base_model": str(tiny_model), "lora_rank": 8, "batch_size": 2,
                      "max_steps": 4, "epochs": 100.0, "save_every": 0, "code_block_size": 32,
                      **kw}
    return LetiConfig(data=data, output_dir=out, **settings)


def weights(adapter: Path) -> dict:
    return load_file(str(adapter / "adapter_model.safetensors"))


def same_weights(a: Path, b: Path) -> bool:
    wa, wb = weights(a), weights(b)
    return wa.keys() == wb.keys() and all(bool((wa[k] == wb[k]).all()) for k in wa)


def test_short_run_lowers_the_loss_and_writes_every_output(tiny_model: Path, triples_file: Path,
                                                           tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = train(config(tiny_model, triples_file, out, max_steps=16, code_ratio=0.0,
                          learning_rate=1e-2))
    loss = result.metrics["loss"]["feedback"]
    assert loss["mean_last_fifth"] < loss["mean_first_fifth"] - 0.05
    assert (out / "adapter" / "adapter_config.json").is_file()
    assert result.metrics["adapter_check"]["loaded_with_peft"]
    assert result.metrics["adapter_check"]["max_logit_diff"] < 1e-4
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["data"]["sha256"] == file_sha256(triples_file)
    assert manifest["settings"]["lora_rank"] == 8 and manifest["parent_adapter"] is None
    assert manifest["base_model"]["name"] == str(tiny_model)
    assert not (out / "checkpoints").exists()  # a finished run needs none
    events = read_events(out / "events.jsonl")
    assert events[0]["event"] == "start" and events[-1]["event"] == "done"
    steps = [e for e in events if e["event"] == "step"]
    assert [e["step"] for e in steps] == list(range(1, 17))
    assert {"loss", "lr", "tokens_per_s", "eta_s", "kind", "total_steps"} <= set(steps[0])


def test_code_steps_are_interleaved_at_the_ratio(tiny_model: Path, triples_file: Path,
                                                 tmp_path: Path, code_dir: Path) -> None:
    result = train(config(tiny_model, triples_file, tmp_path / "run", max_steps=6,
                          code_ratio=2.0, code_corpus=str(code_dir)))
    assert [h["kind"] for h in result.metrics["history"]] == ["feedback", "code", "code"] * 2


def test_default_code_corpus_is_the_stdlib(tiny_model: Path, triples_file: Path,
                                           tmp_path: Path) -> None:
    result = train(config(tiny_model, triples_file, tmp_path / "run", max_steps=2))
    assert result.metrics["loss"]["code"]["steps"] == 1


def test_steps_follow_epochs_when_max_steps_is_unset(tiny_model: Path, triples_file: Path,
                                                     tmp_path: Path, code_dir: Path) -> None:
    # 12 examples, 2 per step: 6 feedback steps per epoch, with a code step between each two
    result = train(config(tiny_model, triples_file, tmp_path / "run", max_steps=None,
                          epochs=1.0, code_corpus=str(code_dir)))
    assert result.metrics["steps"] == 11  # F C F C F C F C F C F
    assert result.metrics["loss"]["feedback"]["steps"] == 6


def test_same_seed_gives_the_same_adapter(tiny_model: Path, triples_file: Path,
                                          tmp_path: Path, code_dir: Path) -> None:
    a = train(config(tiny_model, triples_file, tmp_path / "a", code_corpus=str(code_dir)))
    b = train(config(tiny_model, triples_file, tmp_path / "b", code_corpus=str(code_dir)))
    c = train(config(tiny_model, triples_file, tmp_path / "c", code_corpus=str(code_dir),
                     seed=1))
    assert same_weights(a.adapter, b.adapter) and not same_weights(a.adapter, c.adapter)


def cli_args(tiny_model: Path, data: Path, out: Path, code_dir: Path) -> list[str]:
    return [sys.executable, "-m", "trainer", "train", "--data", str(data), "--output", str(out),
            "--base-model", str(tiny_model), "--rank", "8", "--batch-size", "2",
            "--max-steps", "40", "--epochs", "100", "--save-every", "4",
            "--code-corpus", str(code_dir),
            "--code-block-size", "32", "--no-progress", "--no-validate-load"]


def test_a_killed_run_resumes_from_its_last_checkpoint_to_the_same_adapter(
        tiny_model: Path, triples_file: Path, tmp_path: Path, code_dir: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    out = tmp_path / "killed"
    proc = subprocess.Popen(cli_args(tiny_model, triples_file, out, code_dir) + ["--events", "-"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env=env, cwd=REPO)
    assert proc.stdout is not None
    for line in proc.stdout:  # kill -9 as soon as the second checkpoint is on disk
        event = json.loads(line)
        if event["event"] == "checkpoint" and event["step"] >= 8:
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "adapter").exists() and (out / "checkpoints").is_dir()

    resumed = subprocess.run(cli_args(tiny_model, triples_file, out, code_dir), env=env,
                             cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
    assert resumed.returncode == 0, resumed.stderr
    starts = [e for e in read_events(out / "events.jsonl") if e["event"] == "start"]
    assert starts[0]["resumed_from"] is None and 8 <= starts[1]["resumed_from"] < 40
    steps = [e["step"] for e in read_events(out / "events.jsonl") if e["event"] == "step"]
    assert steps[-1] == 40 and steps.count(40) == 1

    whole = tmp_path / "whole"
    subprocess.run(cli_args(tiny_model, triples_file, whole, code_dir), env=env, cwd=REPO,
                   check=True, capture_output=True, timeout=300)
    assert same_weights(out / "adapter", whole / "adapter")  # bit for bit, as if never killed


def test_resume_refuses_a_checkpoint_of_other_data(tiny_model: Path, triples_file: Path,
                                                   tmp_path: Path, code_dir: Path) -> None:
    from trainer.checkpoint import ResumeError

    out = tmp_path / "run"
    # fake an interrupted run: a checkpoint left behind for other data
    other = tmp_path / "other.jsonl"
    other.write_text(triples_file.read_text().splitlines()[0] + "\n")
    cfg = config(tiny_model, triples_file, out, save_every=2, max_steps=3,
                 code_corpus=str(code_dir))
    ckpt_dir = out / "checkpoints" / "step-00000002"
    ckpt_dir.mkdir(parents=True)
    (ckpt_dir / "trainer_state.json").write_text(json.dumps(
        {"step": 2, "data_sha256": file_sha256(other), "settings": cfg.to_dict()}))
    with pytest.raises(ResumeError, match="another data file"):
        train(cfg)


def test_continue_from_parent_adapter_starts_from_its_weights(
        tiny_model: Path, triples_file: Path, tmp_path: Path, code_dir: Path) -> None:
    parent = train(config(tiny_model, triples_file, tmp_path / "n", code_corpus=str(code_dir)))
    child = train(config(tiny_model, triples_file, tmp_path / "n1", init_adapter=parent.adapter,
                         learning_rate=0.0, code_corpus=str(code_dir)))
    assert same_weights(parent.adapter, child.adapter)  # lr 0: exactly where N ended
    manifest = json.loads(child.manifest_path.read_text())
    assert manifest["parent_adapter"]["weights_sha256"] == \
        file_sha256(parent.adapter / "adapter_model.safetensors")
    assert manifest["parent_adapter"]["manifest"]["data"]["sha256"] == file_sha256(triples_file)


def test_broken_dataset_fails_clearly_and_leaves_no_adapter(tiny_model: Path,
                                                            tmp_path: Path) -> None:
    data = tmp_path / "broken.jsonl"
    data.write_text('{"task_id": "mbpp/1", "kind": "mbpp"\n')
    with pytest.raises(DatasetError, match="line 1"):
        train(config(tiny_model, data, tmp_path / "run"))
    assert not (tmp_path / "run" / "adapter").exists()
    assert read_events(tmp_path / "run" / "events.jsonl")[-1]["event"] == "error"


@pytest.mark.parametrize("objective,kind", [("binary", "binary"), ("sft", "sft"),
                                            ("laffi", "laffi")])
def test_each_objective_trains_its_own_sequences(tiny_model: Path, triples_file: Path,
                                                 tmp_path: Path, code_dir: Path,
                                                 objective: str, kind: str) -> None:
    result = train(config(tiny_model, triples_file, tmp_path / "run", objective=objective,
                          max_steps=2, code_corpus=str(code_dir), laffi_holdout=0.0))
    assert set(result.metrics["data"]["by_kind"]) == {kind}


def test_laffi_mix_reports_heldout_feedback_prediction_accuracy(
        tiny_model: Path, triples_file: Path, tmp_path: Path, code_dir: Path) -> None:
    result = train(config(tiny_model, triples_file, tmp_path / "run", laffi_ratio=0.5,
                          laffi_holdout=0.34, max_steps=2, code_corpus=str(code_dir)))
    assert set(result.metrics["data"]["by_kind"]) == {"leti", "laffi"}
    laffi = result.metrics["laffi"]
    assert laffi["n"] == result.metrics["data"]["heldout_triples"] == 4  # 2 tasks x 2 samples
    assert 0.0 <= laffi["status_accuracy"] <= 1.0
    held = {e["task_id"] for e in laffi["examples"]}
    assert held and len(held) == 2


def test_data_parallel_run_under_torchrun_trains_on_the_global_batch(
        tiny_model: Path, triples_file: Path, tmp_path: Path, code_dir: Path) -> None:
    # two CPU processes (gloo) stand in for two GPUs: the same code path as `torchrun` on GPUs
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    args = ["--data", str(triples_file), "--base-model", str(tiny_model), "--rank", "8",
            "--max-steps", "2", "--code-corpus", str(code_dir), "--code-block-size", "32",
            "--device", "cpu", "--no-progress"]
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                          "--nproc_per_node", "2", "-m", "trainer", "train", *args,
                          "--batch-size", "2", "--output", str(tmp_path / "ddp")],
                         env=env, cwd=REPO, capture_output=True, text=True, timeout=300,
                         check=False)
    assert two.returncode == 0, two.stderr[-3000:]
    one = train(config(tiny_model, triples_file, tmp_path / "one", max_steps=2, batch_size=4,
                       code_corpus=str(code_dir)))
    events = read_events(tmp_path / "ddp" / "events.jsonl")
    assert [e["event"] for e in events].count("start") == 1  # only rank 0 reports
    assert events[0]["processes"] == 2
    steps = [e for e in events if e["event"] == "step"]
    # 2 processes x 2 sequences see exactly the tokens one process sees with 4 sequences
    assert [e["tokens"] for e in steps] == [h["tokens"] for h in _token_history(one)]
    assert (tmp_path / "ddp" / "adapter" / "adapter_model.safetensors").is_file()


def _token_history(result) -> list[dict]:
    return [e for e in read_events(result.metrics_path.parent / "events.jsonl")
            if e["event"] == "step"]


def test_max_steps_bounds_a_run_sized_by_its_epochs(tiny_model: Path, triples_file: Path,
                                                    tmp_path: Path, code_dir: Path) -> None:
    """Epochs size the run; max_steps cuts it only when the epochs would take longer (it used
    to override them, so a run never saw all of its data, or saw it many times)."""
    from trainer.train import run_steps

    # 12 examples, 2 per step: 6 feedback steps an epoch (+ 5 code steps at 1:1)
    cfg = config(tiny_model, triples_file, tmp_path / "a", epochs=1.0, max_steps=100)
    assert run_steps(cfg, 12) == 11
    assert run_steps(config(tiny_model, triples_file, tmp_path / "b", epochs=3.0,
                            max_steps=None, code_ratio=0.0), 12) == 18
    assert run_steps(config(tiny_model, triples_file, tmp_path / "c", epochs=3.0,
                            max_steps=7), 12) == 7
    # gradient accumulation: 2 x 3 sequences per step, 2 feedback steps an epoch
    assert run_steps(config(tiny_model, triples_file, tmp_path / "d", epochs=1.0,
                            max_steps=None, grad_accum=3, code_ratio=0.0), 12) == 2
    result = train(config(tiny_model, triples_file, tmp_path / "run", epochs=1.0,
                          max_steps=100, code_corpus=str(code_dir)))
    assert result.metrics["steps"] == 11 and result.metrics["loss"]["feedback"]["steps"] == 6


def test_warm_up_ratio_then_decay(tiny_model: Path, triples_file: Path, tmp_path: Path) -> None:
    from trainer.prepare import lr_schedule

    cfg = config(tiny_model, triples_file, tmp_path / "x", warmup_ratio=0.25,
                 lr_schedule="cosine")
    factor = lr_schedule(cfg, 20)  # 5 warm-up steps, then cosine to zero
    rising = [factor(s) for s in range(5)]
    assert rising == sorted(rising) and rising[-1] < 1.0
    assert factor(5) == pytest.approx(1.0)
    falling = [factor(s) for s in range(5, 20)]
    assert falling == sorted(falling, reverse=True) and falling[-1] < 0.05
    with pytest.raises(Exception, match="warmup_ratio must be below 1"):
        config(tiny_model, triples_file, tmp_path / "y", warmup_ratio=1.0)


def test_the_run_reports_what_its_reader_dropped(tiny_model: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A truncated failure is dropped by default, marked with ``truncated='mark'`` (the
    ``--truncated`` flag), and the metrics file says which and how many."""
    from tiny_models import triple

    monkeypatch.delenv("LETI_TRAIN_TRUNCATED", raising=False)
    rows = [triple(1, "def add1(x):\n    return x + 1", "good", "All 1 tests passed."),
            triple(2, "def add2(x):\n    return x - 2", "bad", "Test 1 failed."),
            triple(3, "def add3(x):\n    return (((", "bad", "SyntaxError",
                   finish_reason="length")]
    data = tmp_path / "t.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    dropped = train(config(tiny_model, data, tmp_path / "drop", max_steps=1, code_ratio=0.0))
    summary = dropped.metrics["data"]
    assert (summary["read"], summary["triples"], summary["truncated_policy"]) == (3, 2, "drop")
    assert summary["dropped"] == {"truncated failure": 1} and summary["marked"] == 0
    marked = train(config(tiny_model, data, tmp_path / "mark", max_steps=1, code_ratio=0.0,
                          truncated="mark"))
    summary = marked.metrics["data"]
    assert (summary["triples"], summary["marked"], summary["dropped"]) == (3, 1, {})
    with pytest.raises(Exception, match="truncated='sometimes'"):
        config(tiny_model, data, tmp_path / "bad", truncated="sometimes")
