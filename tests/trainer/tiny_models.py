"""Helpers for trainer tests: a tiny random Llama and a real byte-level BPE tokenizer, built
offline in a second (no hub), with the chat template shape of the default model."""

from __future__ import annotations

import json
import zlib
from pathlib import Path

CHAT_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + "
    "message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CORPUS = [
    "def add(a, b):\n    return a + b\n", "assert add(1, 2) == 3",
    "Write a function to add two numbers. The function must be named",
    "Reward: good\nReward: bad\nFeedback:\nTest 1 failed: Expected 3, got -1.",
    "Traceback (most recent call last):\nNameError: name 'x' is not defined",
    "You are an expert Python programmer, and here is your task: pass these tests",
    "```python\nimport os\nfor i in range(10):\n    print(i)\n```", "All 3 tests passed.",
    "class Foo:\n    def __init__(self):\n        self.x = [1, 2, 3]\n",
    "What feedback does this program get when its tests are run? The program passes all tests.",
]


def build_tiny_model(root: Path, *, chat: bool = True, seed: int = 0) -> Path:
    """Save a random 2-layer Llama (hidden 32) and a byte-level BPE tokenizer under ``root``."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=SPECIAL,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS * 4, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>" if chat
                                   else "<|endoftext|>", pad_token="<|endoftext|>",
                                   bos_token="<|endoftext|>")
    if chat:
        fast.chat_template = CHAT_TEMPLATE
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(fast), hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=2048, tie_word_embeddings=True,
                         eos_token_id=fast.eos_token_id, pad_token_id=fast.pad_token_id,
                         bos_token_id=fast.bos_token_id)
    model = LlamaForCausalLM(config)
    root.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(root)
    fast.save_pretrained(root)
    return root


def triple(task: int, program: str, reward: str, feedback: str = "", **extra: object) -> dict:
    """One exported triple (docs/ARCHITECTURE.md 'Training triples') for an MBPP-style task."""
    record = {"sample_id": f"s{task}-{zlib.crc32(program.encode())}", "task_id": f"mbpp/{task}",
              "kind": "mbpp", "instruction": f"Write a function to add {task} to a number.",
              "tests": [f"assert add{task}(1) == {1 + task}"], "entry_point": None,
              "program": program, "status": "passed" if reward == "good" else "failed",
              "feedback": feedback, "reward": reward, "score": 1.0 if reward == "good" else 0.0,
              "source": "sandbox", "adapter": None,
              "reference": f"def add{task}(x):\n    return x + {task}"}
    record.update(extra)
    return record


def write_triples(path: Path, n_tasks: int = 6) -> Path:
    """A small triples file: per task one passing and one failing program."""
    rows = []
    for t in range(1, n_tasks + 1):
        rows.append(triple(t, f"def add{t}(x):\n    return x + {t}", "good", "All 1 tests passed."))
        rows.append(triple(t, f"def add{t}(x):\n    return x - {t}", "bad",
                           f"Test 1 failed: assert add{t}(1) == {1 + t}\n"
                           f"Expected {1 + t}, got {1 - t}."))
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


