"""What a run leaves behind, and the checks made before calling it a success.

``<output_dir>/adapter/`` (the PEFT adapter), ``metrics.json`` (loss history, throughput, peak
memory, validation, LaFFi accuracy), ``manifest.json`` (data hash, settings, base model, parent
adapter, library versions), ``selection.json`` and ``preference_pairs.jsonl`` when the
heterogeneous-feedback selection ran, and ``events.jsonl``.
"""

from __future__ import annotations

import json
import platform
import resource
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from trainer.config import LetiConfig
from trainer.data import Triple, file_sha256
from trainer.events import EventLog
from trainer.train_config import ConfigError

_NOT_TARGETS = ("lm_head", "embed", "wte", "wpe", "score", "classifier")


@dataclass
class TrainResult:
    """Paths of a finished run and its headline metrics."""

    adapter: Path
    metrics_path: Path
    manifest_path: Path
    metrics: dict[str, Any]


def lora_targets(model: Any) -> list[str]:
    """The attention and MLP projections: every Linear leaf except embeddings and the head."""
    import torch

    names = sorted({name.rsplit(".", 1)[-1] for name, module in model.named_modules()
                    if isinstance(module, torch.nn.Linear)
                    and not any(bad in name.rsplit(".", 1)[-1] for bad in _NOT_TARGETS)})
    if not names:
        raise ConfigError("found no Linear projections to adapt in this model: pass "
                          "--target-modules NAME[,NAME...]")
    return names


def prepare_selection(triples: list[Triple], config: LetiConfig, *,
                      embed: Any = None) -> tuple[list[Triple], dict[str, Any] | None]:
    """Preference pairs (always, when tasks have several rated samples) and, when configured,
    the thresholded diverse subset; both written beside the adapter with a report."""
    from trainer.selection import preference_pairs, select

    sel = config.selection
    pairs = preference_pairs(triples, margin=sel.pair_margin, max_per_task=sel.max_pairs_per_task)
    out = config.output_dir
    if pairs:
        with (out / "preference_pairs.jsonl").open("w", encoding="utf-8") as fh:
            fh.writelines(json.dumps(p.to_dict()) + "\n" for p in pairs)
    if not sel.active:
        return triples, None
    kept, report = select(triples, sel, embed=embed)
    report_dict = asdict(report)
    (out / "selection.json").write_text(json.dumps(report_dict, indent=2), encoding="utf-8")
    return kept, report_dict


def peak_memory() -> dict[str, float]:
    """Peak resident memory of this process (and of the GPU, when used), in MiB."""
    import torch

    # ru_maxrss is KiB on Linux
    out = {"peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["peak_gpu_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return out


def save_adapter(model: Any, target: Path) -> Path:
    """Save the LoRA weights only (no tokenizer: nothing added) and swap them into place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".adapter.", dir=target.parent))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def parent_record(adapter: Path | None) -> dict[str, Any] | None:
    """Which adapter this run continued, with its weights' hash and its own manifest."""
    if adapter is None:
        return None
    weights = adapter / "adapter_model.safetensors"
    manifest = adapter.parent / "manifest.json"
    return {"path": str(adapter),
            "weights_sha256": file_sha256(weights) if weights.is_file() else None,
            "manifest": json.loads(manifest.read_text(encoding="utf-8"))
            if manifest.is_file() else None}


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    found = {"python": platform.python_version()}
    for name in ("torch", "transformers", "peft", "accelerate"):
        try:
            found[name] = md.version(name)
        except md.PackageNotFoundError:
            pass
    return found


def _loss_summary(history: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kind in ("feedback", "code"):
        losses = [h["loss"] for h in history if h["kind"] == kind]
        if losses:
            k = max(1, len(losses) // 5)
            out[kind] = {"steps": len(losses), "first": losses[0], "last": losses[-1],
                         "mean_first_fifth": sum(losses[:k]) / k,
                         "mean_last_fifth": sum(losses[-k:]) / k}
    return out


def finish_run(config: LetiConfig, model: Any, tokenizer: Any, events: EventLog, *,
               history: list[dict[str, Any]], tokens: int, elapsed: float, data_sha: str,
               summary: dict[str, Any], selection: dict[str, Any] | None,
               heldout: list[Triple], probe: tuple[int, ...], steps: int,
               precision: str) -> TrainResult:
    """Save, validate (servable, loads with peft, reproduces the trained logits), evaluate
    LaFFi on held-out triples, and write metrics and manifest; only then emit ``done``."""
    import torch

    from trainer.adapters import validate_adapter
    from trainer.base_model import load_base_model, resolve_model_source

    out = config.output_dir
    adapter = save_adapter(model, out / "adapter")
    fresh = None
    if config.validate_load:
        device = str(next(model.parameters()).device)
        fresh, _ = load_base_model(config.base_model, config.cache_dir, device=device,
                                   dtype=next(model.get_base_model().parameters()).dtype)
    check = validate_adapter(adapter, fresh, trained_model=model,
                             probe_ids=torch.tensor([probe[:128]]))
    del fresh
    events.emit("eval", name="adapter", **asdict(check))
    laffi = None
    if heldout:
        from trainer.laffi import evaluate_laffi

        laffi = asdict(evaluate_laffi(model, tokenizer, heldout))
        events.emit("eval", name="laffi", n=laffi["n"], status_accuracy=laffi["status_accuracy"],
                    pass_fail_accuracy=laffi["pass_fail_accuracy"])
    metrics = {"steps": steps, "precision": precision, "tokens": tokens,
               "elapsed_s": round(elapsed, 2),
               "tokens_per_s": round(tokens / elapsed, 1) if elapsed > 0 else None,
               **peak_memory(), "loss": _loss_summary(history), "history": history,
               "data": summary, "adapter_check": asdict(check), "laffi": laffi,
               "selection": selection}
    metrics_path = out / "metrics.json"
    metrics_path.write_text(json.dumps(metrics, indent=2), encoding="utf-8")
    manifest = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "data": {"path": str(config.data), "sha256": data_sha},
        "base_model": {"name": config.base_model,
                       "source": resolve_model_source(config.base_model, config.cache_dir)},
        "parent_adapter": parent_record(config.init_adapter),
        "adapter": {"path": str(adapter),
                    "weights_sha256": file_sha256(adapter / "adapter_model.safetensors")},
        "settings": config.to_dict(), "versions": _versions()}
    manifest_path = out / "manifest.json"
    manifest_path.write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    from trainer.checkpoint import clear_checkpoints

    clear_checkpoints(out)  # the run is complete: its adapter supersedes every checkpoint
    events.emit("done", adapter=str(adapter), metrics=str(metrics_path),
                manifest=str(manifest_path), steps=steps)
    return TrainResult(adapter, metrics_path, manifest_path, metrics)
