"""``leti train``: the trainer's own command (``trainer.cli``), so ``leti train`` and
``python -m trainer train`` are the same program. The service launches it as a separate process:
a crash or an out-of-memory kill ends the training run, never the API."""

from __future__ import annotations

from trainer.cli import train_command as train

__all__ = ["train"]
