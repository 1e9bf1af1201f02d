"""LaFFi: train the model to predict the feedback its program gets, and measure how well it does.

The input is the task (built by ``trainer.prompts``, without a reward marker) and the program as
the model's answer, then one question; the target is the feedback text, or ``PASS_TEXT`` for a
program that passed. Accuracy on held-out triples (whole tasks kept out of training by
``split_by_task``) compares the *status* the predicted text implies (passed, failed, error, ...)
with the real one, since feedback wording varies.
"""

from __future__ import annotations

import math
import random
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from trainer.data import Example, Triple
from trainer.prompts import (
    CLOSE_FENCE,
    OPEN_FENCE,
    Reward,
    build_prompt,
    has_chat_template,
    instruction_text,
)

PASS_TEXT = "The program passes all tests."
FAIL_TEXT = "The program does not pass the tests."
QUESTION = "What feedback does this program get when its tests are run?"
PLAIN_HEADER = "Feedback:\n"


def feedback_target(triple: Triple) -> str:
    """What the model should predict: the pass sentence, or the real feedback text."""
    if triple.reward is Reward.GOOD:
        return PASS_TEXT
    return triple.feedback.strip() or FAIL_TEXT


def laffi_prompt(triple: Triple, tokenizer: Any = None) -> str:
    """The task, the program as the answer, and the question; generation starts after it."""
    answer = f"{OPEN_FENCE}{triple.program.strip(chr(10))}\n{CLOSE_FENCE}"
    if has_chat_template(tokenizer):
        messages = [{"role": "user", "content": instruction_text(triple.task)},
                    {"role": "assistant", "content": answer},
                    {"role": "user", "content": QUESTION}]
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    # plain text: build_prompt ends with the opening fence, so the program continues it
    start = build_prompt(triple.task, tokenizer=tokenizer)
    return f"{start}{triple.program.strip(chr(10))}\n{CLOSE_FENCE}\n\n{QUESTION}\n{PLAIN_HEADER}"


def laffi_example(triple: Triple, tokenizer: Any = None) -> Example:
    """One LaFFi training example; the completion ends the turn like any answer."""
    prompt = laffi_prompt(triple, tokenizer)
    target = feedback_target(triple)
    if has_chat_template(tokenizer):
        answer = f"{OPEN_FENCE}{triple.program.strip(chr(10))}\n{CLOSE_FENCE}"
        full = tokenizer.apply_chat_template(
            [{"role": "user", "content": instruction_text(triple.task)},
             {"role": "assistant", "content": answer},
             {"role": "user", "content": QUESTION},
             {"role": "assistant", "content": target}], tokenize=False)
        completion = full[len(prompt):] if full.startswith(prompt) else \
            target + (getattr(tokenizer, "eos_token", None) or "")
        return Example(prompt, completion, "laffi", triple.task_id)
    eos = (getattr(tokenizer, "eos_token", None) or "") if tokenizer is not None else ""
    return Example(prompt, f"{target}\n{eos}", "laffi", triple.task_id)


_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("passed", re.compile(r"passes all tests|All \d+ tests passed|The test passed", re.IGNORECASE)),
    ("syntax_error", re.compile(r"\b(SyntaxError|IndentationError|TabError)\b")),
    ("timeout", re.compile(r"^\s*Timeout\b|did not finish within", re.IGNORECASE | re.MULTILINE)),
    ("memory", re.compile(r"\bMemoryError\b|^\s*Killed\b", re.MULTILINE)),
    ("crashed", re.compile(r"\bSIG[A-Z]{2,}\b|\bcrashed\b|\bSystemExit\b|exited early",
                           re.IGNORECASE)),
    ("failed", re.compile(r"\bTest \d+ failed\b|\bAssertionError\b")),
    ("error", re.compile(r"Traceback|\b[A-Z]\w*(Error|Exception)\b")),
)


def status_of(text: str) -> str:
    """The sandbox status a feedback text implies ('unknown' when it implies none)."""
    for status, pattern in _PATTERNS:
        if pattern.search(text):
            return status
    return "unknown"


def true_status(triple: Triple) -> str:
    """The status a triple really had: the sandbox's, else what its label and text say."""
    if triple.status:
        return triple.status
    if triple.reward is Reward.GOOD:
        return "passed"
    implied = status_of(triple.feedback)
    return implied if implied not in ("passed", "unknown") else "failed"


def split_by_task(triples: Sequence[Triple], holdout: float, *,
                  seed: int = 0) -> tuple[list[Triple], list[Triple]]:
    """(train, held-out) with whole tasks held out, so held-out programs were never seen."""
    tasks = sorted({t.task_id for t in triples})
    if holdout <= 0 or len(tasks) < 2:
        return list(triples), []
    rng = random.Random(seed)
    rng.shuffle(tasks)
    held = set(tasks[:max(1, math.floor(len(tasks) * holdout))])
    return [t for t in triples if t.task_id not in held], [t for t in triples if t.task_id in held]


@dataclass
class LaffiAccuracy:
    """Feedback-prediction accuracy on held-out triples."""

    n: int = 0
    status_accuracy: float = 0.0  # predicted status == real status
    pass_fail_accuracy: float = 0.0  # predicted passed? == really passed?
    confusion: dict[str, int] = field(default_factory=dict)  # "real->predicted": count
    examples: list[dict[str, str]] = field(default_factory=list)  # a few, for reading


def score_predictions(triples: Sequence[Triple], predictions: Sequence[str]) -> LaffiAccuracy:
    """Compare predicted feedback texts with the triples' real statuses."""
    if len(triples) != len(predictions):
        raise ValueError("one prediction per triple is needed")
    if not triples:
        return LaffiAccuracy()
    real = [true_status(t) for t in triples]
    guess = [status_of(p) for p in predictions]
    same = sum(r == g for r, g in zip(real, guess))
    pass_same = sum((r == "passed") == (g == "passed") for r, g in zip(real, guess))
    confusion = Counter(f"{r}->{g}" for r, g in zip(real, guess))
    shown = [{"task_id": t.task_id, "real": r, "predicted": g, "text": p[:200]}
             for t, r, g, p in list(zip(triples, real, guess, predictions))[:5]]
    return LaffiAccuracy(len(triples), same / len(triples), pass_same / len(triples),
                         dict(confusion), shown)


def predict_feedback(model: Any, tokenizer: Any, triples: Sequence[Triple], *,
                     max_new_tokens: int = 48) -> list[str]:
    """Greedy feedback predictions, one triple at a time (held-out sets are small)."""
    import torch

    from trainer.prompts import encode_kwargs

    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    outputs: list[str] = []
    model.eval()
    with torch.no_grad():
        for triple in triples:
            enc = tokenizer(laffi_prompt(triple, tokenizer), return_tensors="pt",
                            **encode_kwargs(tokenizer)).to(device)
            out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                                 pad_token_id=pad)
            outputs.append(tokenizer.decode(out[0, enc["input_ids"].shape[1]:],
                                            skip_special_tokens=True))
    return outputs


def evaluate_laffi(model: Any, tokenizer: Any, triples: Sequence[Triple], *,
                   max_new_tokens: int = 48) -> LaffiAccuracy:
    """Feedback-prediction accuracy of ``model`` on ``triples`` (held out from training)."""
    return score_predictions(triples, predict_feedback(model, tokenizer, triples,
                                                       max_new_tokens=max_new_tokens))
