"""``python -m trainer train ...``: the trainer as its own process, without the service."""

from trainer.cli import app

app()
