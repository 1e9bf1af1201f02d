"""``python -m trainer train ...``: the trainer as its own process, without the service."""

from trainer.memory import use_huge_pages

use_huge_pages()  # before torch is imported (trainer.memory says why)

from trainer.cli import app

app()
