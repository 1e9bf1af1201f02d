"""Generation backends behind one interface: the embedded transformers+peft model (default) and a
vLLM server. Importing this package stays light: torch, transformers, peft and httpx load only
when a backend is built (``make_generator``)."""

from service.generation.base import BASE, Generator
from service.generation.extract import extract_program
from service.generation.factory import make_generator
from service.generation.types import (
    AdapterError,
    AdapterInfo,
    AdapterNotFound,
    BackendUnavailable,
    Completion,
    GenerationError,
    SamplingParams,
    ServingState,
)

__all__ = [
    "BASE", "AdapterError", "AdapterInfo", "AdapterNotFound", "BackendUnavailable", "Completion",
    "GenerationError", "Generator", "SamplingParams", "ServingState", "extract_program",
    "make_generator",
]
