"""LETI training: data building from exported triples, and LoRA fine-tuning. Runs as its own process.

Imports nothing from ``service`` or ``sandbox``. The prompt and sequence format shared by sampling
and training lives here (``trainer/prompts.py``) so the two can never drift apart.
"""
