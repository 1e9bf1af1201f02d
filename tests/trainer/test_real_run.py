"""A real short LETI run on the default model, from triples the sandbox produced.

For a few MBPP tasks, the reference solution and three broken copies (a wrong answer, a name
error, a syntax error) run in the real sandbox; its outcomes and rendered feedback become
exported-style triples; a few training steps follow on the default model. Then: the loss on
those triples fell, and the adapter loads into the embedded generator and changes what it writes.
Kept small (2 CPU cores take ~10 s per 1,000 trained tokens): a few minutes in all.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

pytestmark = [pytest.mark.model, pytest.mark.slow]

N_TASKS = 2


def broken_copies(reference: str) -> list[str]:
    """A wrong answer, a runtime error and a syntax error, made from the reference."""
    lines = reference.splitlines()
    top = max(i for i, line in enumerate(lines) if line.startswith("def "))  # the tested one
    header = "\n".join(lines[:top + 1])
    return [f"{header}\n    return None", f"{header}\n    return undefined_name + 1",
            f"{header}\n    return (1,"]


def sandbox_triples(mbpp_path: Path, sandbox) -> list[dict]:
    """Exported-format triples: each program run for real, with the sandbox's own feedback."""
    from sandbox import render_feedback
    from sandbox.tasks import load_mbpp

    rows = []
    for task in load_mbpp(mbpp_path, split="train")[:N_TASKS]:
        for j, program in enumerate([task.reference, *broken_copies(task.reference)]):
            outcome = sandbox.run(task.job_for(program))
            passed = outcome.status.value == "passed"
            rows.append({"sample_id": f"{task.task_id}#{j}", "task_id": task.task_id,
                         "kind": "mbpp", "instruction": task.instruction,
                         "tests": list(task.tests), "entry_point": None, "program": program,
                         "status": outcome.status.value, "feedback": render_feedback(outcome),
                         "reward": "good" if passed else "bad", "score": float(passed),
                         "source": "sandbox", "adapter": None, "reference": task.reference})
    return rows


def mean_loss(model, tokenizer, triples_path: Path) -> float:
    """Mean LM loss of ``model`` over the LETI sequences of the triples file."""
    import torch

    from trainer.batches import collate, encode_example
    from trainer.data import feedback_examples, read_triples

    examples = feedback_examples(read_triples(triples_path), "leti", tokenizer=tokenizer)
    encoded = [e for e in (encode_example(x, tokenizer, mask_prompt=False, max_length=1024)
                           for x in examples) if e]
    model.eval()
    with torch.no_grad():
        losses = [float(model(**collate([e], tokenizer.pad_token_id)).loss) for e in encoded]
    return sum(losses) / len(losses)


def test_real_leti_run_lowers_loss_and_changes_the_generator(mbpp_path: Path, local_sandbox,
                                                            tmp_path: Path) -> None:
    """Sandbox -> triples -> `leti train` on the default model -> the embedded generator."""
    from peft import PeftModel

    from sandbox.tasks import load_mbpp
    from service.generation import SamplingParams
    from service.generation.embedded import EmbeddedGenerator
    from trainer.config import LetiConfig
    from trainer.prompts import Reward, TaskPrompt, build_prompt
    from trainer.train import train

    rows = sandbox_triples(mbpp_path, local_sandbox)
    statuses = {r["status"] for r in rows}
    assert {"passed", "failed", "error", "syntax_error"} <= statuses, statuses
    data = tmp_path / "triples.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))

    generator = EmbeddedGenerator.load(device="cpu")
    before = mean_loss(generator.model, generator.tokenizer, data)
    result = train(LetiConfig(data=data, output_dir=tmp_path / "run", max_steps=2, epochs=100.0,
                              batch_size=4,
                              learning_rate=3e-3, code_block_size=64, save_every=0,
                              device="cpu"))  # one feedback step, one plain-code step
    assert result.metrics["adapter_check"]["loaded_with_peft"]
    assert result.metrics["data"]["examples"] == len(rows)

    asyncio.run(generator.load_adapter("leti-test", result.adapter))
    trained = PeftModel.from_pretrained(EmbeddedGenerator.load(device="cpu").model,
                                        str(result.adapter))
    after = mean_loss(trained, generator.tokenizer, data)
    assert after < before - 0.05, (before, after)

    tasks = load_mbpp(mbpp_path, split="train")[:N_TASKS]
    prompts = [build_prompt(TaskPrompt("mbpp", t.instruction, t.tests), reward=Reward.GOOD,
                            tokenizer=generator.tokenizer) for t in tasks]
    greedy = SamplingParams(temperature=0.0, max_new_tokens=16)
    base = [c[0].text for c in generator.generate_sync(prompts, greedy, None)]
    adapted = [c[0].text for c in generator.generate_sync(prompts, greedy, "leti-test")]
    assert base != adapted, base
