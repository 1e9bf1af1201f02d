"""Generate programs for a task: build the LETI prompt, sample, extract, store (and evaluate).

The prompt and the program come from ``service.core.programs`` (the prompt text from
``trainer.prompts.build_prompt``, which training uses too), with the "good" marker when asked, or
by default whenever an adapter (not the base model) samples: LETI adapters are trained to follow
it. Samples are committed before the answer; with ``evaluate`` they then run in the sandbox like
any ``POST /v1/evaluate``.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import anyio.to_thread

from service.core.config import Settings
from service.core.errors import InvalidRequest, NotFound, check_limit
from service.core.evaluation import Evaluated, EvaluationInput, Evaluator
from service.core.programs import completion_program, task_prompt
from service.store.db import Store
from service.store.models import SampleRow, TaskRow
from service.store.samples import NewSample, add_samples
from service.store.tasks import get_task

if TYPE_CHECKING:
    from service.generation.base import Generator

log = logging.getLogger(__name__)
BASE = "base"
DEFAULT_NEW_TOKENS = 256


@dataclass(frozen=True)
class GenerationInput:
    """A task id, or an instruction with optional tests; how many and how to sample."""

    task_id: str | None = None
    instruction: str | None = None
    tests: tuple[str, ...] = ()
    setup: str = ""
    n: int = 1
    temperature: float = 0.8
    top_p: float = 0.95
    max_new_tokens: int | None = None  # None: DEFAULT_NEW_TOKENS, capped by the server's limit
    seed: int | None = None
    repetition_penalty: float = 1.0
    adapter: str | None = None
    condition_on_good: bool | None = None
    evaluate: bool = False


@dataclass(frozen=True)
class Generated:
    """A stored sample and, when asked, its sandbox result."""

    sample: SampleRow
    result: Evaluated | None


@dataclass(frozen=True)
class GenerationResult:
    task_id: str
    model: str | None
    adapter: str | None
    conditioned_on: str | None
    samples: list[Generated]


class Generation:
    """The generate use case over one generator, store and evaluator."""

    def __init__(self, generator: Generator, tokenizer: Any, store: Store, evaluator: Evaluator,
                 settings: Settings, metrics: Any) -> None:
        self.generator = generator
        self.tokenizer = tokenizer
        self.store = store
        self.evaluator = evaluator
        self.settings = settings
        self.metrics = metrics

    def _task(self, what: GenerationInput) -> TaskRow:
        if (what.task_id is None) == (what.instruction is None):
            raise InvalidRequest("give exactly one of 'task_id' or 'instruction'")
        if what.task_id is not None:
            with self.store.read() as session:
                task = get_task(session, what.task_id)
            if task is None:
                raise NotFound(f"no task {what.task_id!r} (list them with GET /v1/tasks)")
            return task
        from service.core.tasks import create_user_task

        return create_user_task(self.store, what.instruction or "", list(what.tests), what.setup)

    def resolved_adapter(self, adapter: str | None) -> str | None:
        """The concrete adapter a request will use (None: the base model). Prompts are
        conditioned on the "good" marker exactly when this is not None (``task_prompt``)."""
        if adapter == BASE:
            return None
        if adapter is None or adapter == self.generator.alias:
            return self.generator.serving
        return adapter

    async def generate(self, what: GenerationInput) -> GenerationResult:
        return (await self.generate_batch([what]))[0]

    async def generate_batch(self, batch: list[GenerationInput]) -> list[GenerationResult]:
        """Several tasks sampled in one generator call (one batch on the embedded backend, so
        far faster than one call per task), all with the first input's sampling settings;
        prompt ``i`` of the batch draws from its own seeded stream (``row_seed``)."""
        from service.generation import SamplingParams
        from trainer.prompts import PROGRAM_STOP

        if not batch:
            return []
        what = batch[0]
        check_limit(what.n, self.settings.max_n, "n", "LETI_MAX_N")
        new_tokens = what.max_new_tokens or min(DEFAULT_NEW_TOKENS, self.settings.max_new_tokens)
        check_limit(new_tokens, self.settings.max_new_tokens, "max_new_tokens",
                    "LETI_MAX_NEW_TOKENS")
        tasks = [await anyio.to_thread.run_sync(self._task, item) for item in batch]
        conditioned = what.condition_on_good
        if conditioned is None:
            conditioned = self.resolved_adapter(what.adapter) is not None
        prompts = [task_prompt(task, self.tokenizer, conditioned=conditioned) for task in tasks]
        params = SamplingParams(n=what.n, temperature=what.temperature, top_p=what.top_p,
                                max_new_tokens=new_tokens, seed=what.seed, stop=PROGRAM_STOP,
                                repetition_penalty=what.repetition_penalty)
        outputs = await self.generator.generate(prompts, params, adapter=what.adapter)
        sampling = {k: v for k, v in asdict(params).items() if k != "stop"}
        results = []
        for task, prompt, completions in zip(tasks, prompts, outputs, strict=True):
            new = [NewSample(task_id=task.id, origin="generated", completion=c.text,
                             prompt=prompt, program=completion_program(task, c.text),
                             model=self.generator.model_name, adapter=c.adapter,
                             sampling=sampling, conditioned_on="good" if conditioned else None,
                             prompt_tokens=c.prompt_tokens, completion_tokens=c.completion_tokens,
                             finish_reason=c.finish_reason) for c in completions]
            rows = await anyio.to_thread.run_sync(self._store, new)
            for c in completions:
                self.metrics.generated_tokens.labels(c.adapter or BASE).inc(c.completion_tokens)
                self.metrics.samples.labels(c.adapter or BASE).inc()
            evaluated: dict[str, Evaluated] = {}
            if what.evaluate:
                done = await self.evaluator.evaluate(
                    EvaluationInput(sample_ids=[r.id for r in rows]))
                evaluated = {r.sample_id: r for r in done}
            adapter = (completions[0].adapter if completions
                       else self.resolved_adapter(what.adapter))
            results.append(GenerationResult(task.id, self.generator.model_name, adapter,
                                            "good" if conditioned else None,
                                            [Generated(r, evaluated.get(r.id)) for r in rows]))
        return results

    def _store(self, new: list[NewSample]) -> list[SampleRow]:
        with self.store.write() as session:
            return add_samples(session, new)

    async def close(self) -> None:
        await self.generator.close()


async def start_generation(settings: Settings, store: Store, evaluator: Evaluator,
                           metrics: Any) -> tuple[Generation | None, str | None]:
    """The generation service, or (None, why not): the API still serves everything else."""
    if settings.generator_backend == "none":
        return None, "no generator configured (LETI_GENERATOR_BACKEND=none)"
    try:
        generator = await build_generator(settings)
    except Exception as exc:  # noqa: BLE001 - any failure to start means "generator down"
        log.exception("the generator did not start")
        return None, f"the {settings.generator_backend} generator did not start: " \
                     f"{type(exc).__name__}: {exc}"
    try:
        tokenizer = await anyio.to_thread.run_sync(prompt_tokenizer, generator, settings)
    except Exception as exc:  # noqa: BLE001 - no tokenizer, no prompts: generation is down
        await generator.close()
        return None, f"no tokenizer to build prompts with: {type(exc).__name__}: {exc}"
    generator.use_prompt_tokenizer(tokenizer)  # a server: tokenize as training does
    return Generation(generator, tokenizer, store, evaluator, settings, metrics), None


async def build_generator(settings: Settings) -> Generator:
    """The configured backend, started; heavy libraries load only for the chosen backend."""
    from service.generation import make_generator

    key = settings.vllm_api_key.get_secret_value() if settings.vllm_api_key else None
    generator = await anyio.to_thread.run_sync(lambda: make_generator(
        settings.generator_backend,  # type: ignore[arg-type]  # "none" never gets here
        model=settings.generator_model, device=settings.generator_device,
        dtype=settings.generator_dtype, max_batch_size=settings.generator_batch_size,
        threads=settings.generator_threads,
        vllm_url=settings.vllm_base_urls, vllm_api_key=key))
    await generator.start()
    return generator


def prompt_tokenizer(generator: Generator, settings: Settings) -> Any:
    """The tokenizer whose chat template shapes prompts: the embedded model's own; for vLLM,
    ``LETI_TOKENIZER`` or the default model's (the model vLLM serves by default)."""
    if generator.tokenizer is not None:
        return generator.tokenizer
    from trainer.base_model import load_tokenizer, resolve_model_source

    return load_tokenizer(resolve_model_source(settings.tokenizer))
