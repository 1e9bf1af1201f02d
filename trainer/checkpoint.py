"""Checkpoints that make a killed run resumable, bit for bit.

A checkpoint holds everything the next step depends on: the LoRA weights, the optimiser and
scheduler, the positions of both data streams, every random generator (dropout draws from
torch's), and the history so far. It is written to a temporary directory and renamed into
place, so a run killed mid-save leaves the previous checkpoint intact and never a torn one.
"""

from __future__ import annotations

import json
import random
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CHECKPOINTS = "checkpoints"
_NAME = re.compile(r"^step-(\d{8})$")
STATE_FILE = "trainer_state.json"  # written last: its presence marks a complete checkpoint


class ResumeError(RuntimeError):
    """The checkpoint in the output directory belongs to a different run."""


@dataclass
class Checkpoint:
    """Where a checkpoint lives and the JSON state written with it."""

    path: Path
    step: int
    state: dict[str, Any]


def checkpoint_dir(output_dir: Path) -> Path:
    return Path(output_dir) / CHECKPOINTS


def latest_checkpoint(output_dir: Path) -> Checkpoint | None:
    """The newest complete checkpoint, or None."""
    root = checkpoint_dir(output_dir)
    if not root.is_dir():
        return None
    found = sorted((int(m.group(1)), p) for p in root.iterdir()
                   if (m := _NAME.match(p.name)) and (p / STATE_FILE).is_file())
    if not found:
        return None
    step, path = found[-1]
    return Checkpoint(path, step, json.loads((path / STATE_FILE).read_text(encoding="utf-8")))


def rng_state() -> dict[str, Any]:
    import torch

    state: dict[str, Any] = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    import torch

    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(output_dir: Path, step: int, model: Any, optimizer: Any, scheduler: Any,
                    state: dict[str, Any], *, keep: int = 2) -> Path:
    """Write checkpoint ``step`` atomically and prune all but the newest ``keep``."""
    import torch

    root = checkpoint_dir(output_dir)
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{step:08d}"
    tmp = Path(tempfile.mkdtemp(prefix=f".step-{step:08d}.", dir=root))
    try:
        model.save_pretrained(tmp / "adapter", safe_serialization=True)
        torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                    "rng": rng_state()}, tmp / "optimizer.pt")
        (tmp / STATE_FILE).write_text(json.dumps({"step": step, **state}), encoding="utf-8")
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    complete = sorted(p for p in root.iterdir() if _NAME.match(p.name))
    for old in complete[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    for stale in root.glob(".step-*"):  # temp dirs of a run killed mid-save
        shutil.rmtree(stale, ignore_errors=True)
    return final


def load_checkpoint(ckpt: Checkpoint, model: Any, optimizer: Any, scheduler: Any) -> None:
    """Restore weights, optimiser, scheduler and random generators from ``ckpt``."""
    import torch
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    weights = load_file(str(ckpt.path / "adapter" / "adapter_model.safetensors"))
    result = set_peft_model_state_dict(model, weights)
    unexpected = getattr(result, "unexpected_keys", None)
    if unexpected:
        raise ResumeError(f"checkpoint {ckpt.path} does not fit this model ({unexpected[0]} is "
                          "unexpected): use another --output or --no-resume")
    saved = torch.load(ckpt.path / "optimizer.pt", map_location="cpu", weights_only=False)
    optimizer.load_state_dict(saved["optimizer"])
    scheduler.load_state_dict(saved["scheduler"])
    set_rng_state(saved["rng"])


# Settings that may change between a killed run and its resumption.
RESUMABLE_CHANGES = frozenset({"resume", "events", "validate_load", "save_every",
                               "keep_checkpoints", "log_every", "max_steps", "epochs",
                               "reuse_memory"})  # speed only: the same steps either way


def check_same_run(ckpt: Checkpoint, settings: dict[str, Any], data_sha256: str) -> None:
    """Refuse to resume a checkpoint written for other data or other settings."""
    if ckpt.state.get("data_sha256") != data_sha256:
        raise ResumeError(f"{ckpt.path} was written for another data file: use a new --output, "
                          "or --no-resume to start over here")
    before = ckpt.state.get("settings", {})
    changed = sorted(k for k in settings if k not in RESUMABLE_CHANGES
                     and k in before and before[k] != settings[k])
    if changed:
        raise ResumeError(f"{ckpt.path} was written with other settings ({', '.join(changed)}): "
                          "use a new --output, or --no-resume to start over here")


def clear_checkpoints(output_dir: Path) -> None:
    """Drop old checkpoints (a run started with ``resume=False``)."""
    shutil.rmtree(checkpoint_dir(output_dir), ignore_errors=True)
