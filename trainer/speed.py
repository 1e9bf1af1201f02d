"""Training throughput and peak memory, against a bare PyTorch loop as the anchor.

``leti bench train`` runs each measurement in its own process (``python -m trainer.speed``),
so peak resident memory belongs to that measurement alone:

* ``trainer``      — the real ``leti train`` loop on feedback batches only (``--code-ratio 0``);
* ``trainer+code`` — the default: feedback and plain-code steps interleaved 1:1;
* ``trainer-fp32`` — ``trainer`` with ``--precision fp32``: the packed default before bf16 on
  CPUs that multiply it natively (identical to ``trainer`` elsewhere);
* ``previous``, ``previous+code`` — the same two with the previous path (``--no-packing
  --no-reuse-memory``, float32 on CPU: right-padded batches, the allocator's defaults, no huge
  pages), the baseline that the faster default is measured against in the same run;
* ``bare``         — the anchor: the same LoRA model and the same encoded feedback batches in a
  plain forward/backward/AdamW loop, what the hardware gives with no trainer around it.

Model loading and adapter validation are outside the timing.

Tokens are the non-padding tokens of each batch; warm-up steps are excluded from the rate.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any


@dataclass
class BenchResult:
    """One measurement: which loop, how fast, how much memory."""

    loop: str
    steps: int
    tokens: int
    seconds: float
    tokens_per_s: float
    tokens_per_cpu_s: float  # robust to other jobs on a shared machine: work, not waiting
    s_per_step: float
    peak_rss_mib: float
    peak_gpu_mib: float | None
    device: str
    precision: str = ""  # what the run computed in (``start`` event), e.g. "bf16-frozen"


TRAINER_LOOPS = {  # loop name: (code_ratio, the faster default path or the previous one, precision)
    "trainer": (0.0, True, "auto"), "trainer+code": (1.0, True, "auto"),
    "trainer-fp32": (0.0, True, "fp32"),
    "previous": (0.0, False, "previous"), "previous+code": (1.0, False, "previous"),
}


def run_trainer(data: Path, out: Path, *, steps: int, batch_size: int, base_model: str,
                device: str, code_ratio: float = 0.0, fast: bool = True,
                precision: str = "auto", name: str | None = None) -> BenchResult:
    """The real loop; its step events carry the timing (model loading and validation excluded).
    ``fast=False`` is the previous path: padded batches and the allocator's defaults;
    ``precision="previous"`` is what the code chose before bf16 on CPU (fp32 there, else auto)."""
    from trainer.config import LetiConfig
    from trainer.events import read_events
    from trainer.outputs import peak_memory
    from trainer.train import train

    if precision == "previous":
        precision = "fp32" if device == "cpu" else "auto"
    # exactly ``steps``: enough epochs that the step bound, not the data, ends the run
    config = LetiConfig(data=data, output_dir=out, base_model=base_model, max_steps=steps,
                        epochs=float(steps * batch_size),
                        batch_size=batch_size, save_every=0, resume=False, validate_load=False,
                        device=device, code_ratio=code_ratio, packing=fast,
                        reuse_memory=fast, precision=precision)  # type: ignore[arg-type]
    train(config)
    log = read_events(out / "events.jsonl")
    events = [e for e in log if e["event"] == "step"]
    first, last = events[0], events[-1]  # the first step warms up kernels and allocators
    tokens, seconds = last["tokens"] - first["tokens"], last["elapsed_s"] - first["elapsed_s"]
    cpu = last["cpu_s"] - first["cpu_s"]
    mem = peak_memory()
    name = name or ("trainer" if fast else "previous") + ("+code" if code_ratio else "")
    start = next(e for e in log if e["event"] == "start")
    return BenchResult(name, len(events) - 1, tokens,
                       round(seconds, 2), round(tokens / seconds, 1), round(tokens / cpu, 1),
                       round(seconds / (len(events) - 1), 3), mem["peak_rss_mib"],
                       mem.get("peak_gpu_mib"), device, start.get("precision", ""))


def run_bare(data: Path, *, steps: int, batch_size: int, base_model: str,
             device: str) -> BenchResult:
    """The anchor: identical model, LoRA and batches, in the plainest loop PyTorch allows."""
    import torch
    from peft import LoraConfig, get_peft_model

    from trainer.base_model import load_base_model
    from trainer.batches import ExampleStream, collate, encode_example
    from trainer.data import feedback_examples, read_triples
    from trainer.outputs import lora_targets, peak_memory

    torch.manual_seed(0)
    model, tok = load_base_model(base_model, device=device)
    examples = feedback_examples(read_triples(data), "leti", tokenizer=tok)
    encoded = [e for e in (encode_example(x, tok, mask_prompt=False, max_length=1024)
                           for x in examples) if e]
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05,
                                             target_modules=lora_targets(model),
                                             task_type="CAUSAL_LM"))
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-4)
    stream = ExampleStream(encoded, seed=0)
    tokens, start, cpu = 0, 0.0, 0.0
    for step in range(steps):
        if step == 1:
            tokens, start, cpu = 0, time.perf_counter(), time.process_time()
        batch = {k: v.to(device) for k, v in
                 collate(stream.next_batch(batch_size), tok.pad_token_id).items()}
        model(**batch).loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        tokens += int(batch["attention_mask"].sum())
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    mem = peak_memory()
    return BenchResult("bare", steps - 1, tokens, round(seconds, 2), round(tokens / seconds, 1),
                       round(tokens / cpu, 1), round(seconds / (steps - 1), 3),
                       mem["peak_rss_mib"], mem.get("peak_gpu_mib"), device,
                       str(model.dtype).removeprefix("torch."))


def measure(loop: str, args: dict[str, Any]) -> BenchResult:
    """Run one measurement in this process (called in a fresh process by the CLI)."""
    if loop in TRAINER_LOOPS:
        code_ratio, fast, precision = TRAINER_LOOPS[loop]
        return run_trainer(Path(args["data"]), Path(args["out"]), steps=args["steps"],
                           batch_size=args["batch_size"], base_model=args["base_model"],
                           device=args["device"], code_ratio=code_ratio, fast=fast,
                           precision=precision, name=loop)
    if loop == "bare":
        return run_bare(Path(args["data"]), steps=args["steps"], batch_size=args["batch_size"],
                        base_model=args["base_model"], device=args["device"])
    raise ValueError(f"unknown loop {loop!r}: 'bare' or one of {', '.join(TRAINER_LOOPS)}")


if __name__ == "__main__":  # python -m trainer.speed LOOP '{"data": ...}'
    if TRAINER_LOOPS.get(sys.argv[1], (0, False))[1]:  # the trainer's process, as it runs
        from trainer.memory import use_huge_pages

        use_huge_pages()
    print(json.dumps(asdict(measure(sys.argv[1], json.loads(sys.argv[2])))))
