"""The speed harnesses' tests run on the generation tests' tiny models (the same fixtures)."""

from tests.generation.conftest import (  # noqa: F401 - fixtures, reused
    adapters,
    smol_tokenizer,
    tiny_base,
    tiny_generator,
    tiny_model,
)
