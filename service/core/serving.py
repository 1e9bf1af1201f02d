"""Serve completions to outside clients (the OpenAI-compatible door) and keep each as a sample.

Protocol-free: the routes translate OpenAI's wire format into a ``ServeInput`` and render what
comes back. A request names a model (``policy``: whatever serves the alias now; ``base``; or a
loaded adapter version), gives either a conversation (rendered with the model's chat template,
after the LETI "good" marker when an adapter samples, as ``/v1/generate`` does) or raw prompts
(sent as given), and how to sample. Every completion is stored as a sample of a user task made
from the request's instruction text, with its prompt, concrete adapter and sampling settings,
under an id fixed before generation starts so a stream can announce it; with ``tests`` each
answer also runs in the sandbox and its textual feedback is stored like any evaluation.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio.to_thread

from service.core.errors import InvalidRequest, NotFound, check_limit
from service.core.evaluation import Evaluated, EvaluationInput
from service.core.generation import BASE, DEFAULT_NEW_TOKENS, Generation
from service.core.programs import completion_program, marker_prefix
from service.store.models import SampleRow, TaskRow, new_id
from service.store.samples import NewSample, add_samples
from service.store.tasks import ensure_user_task


@dataclass(frozen=True)
class Message:
    role: str  # system | developer | user | assistant
    content: str


@dataclass(frozen=True)
class ServeInput:
    """One request: ``messages`` (chat) or ``prompts`` (raw text), never both."""

    model: str
    messages: tuple[Message, ...] = ()
    prompts: tuple[str, ...] = ()
    n: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    max_tokens: int | None = None
    stop: tuple[str, ...] = ()
    seed: int | None = None
    tests: tuple[str, ...] = ()
    setup: str = ""
    condition_on_good: bool | None = None


@dataclass(frozen=True)
class TextDelta:
    """More text for choice ``index`` (a stream's unit)."""

    index: int
    text: str


@dataclass
class Choice:
    """A finished choice: its stored sample and, with tests, its sandbox result."""

    index: int
    sample_id: str
    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    result: Evaluated | None = None


@dataclass
class Served:
    """What a request produced, once every choice has finished and is stored."""

    model: str  # the concrete model that answered: an adapter version, or "base"
    n: int
    choices: list[Choice] = field(default_factory=list)

    @property
    def prompt_tokens(self) -> int:  # each prompt counted once, however many choices it has
        return sum(c.prompt_tokens for c in self.choices if c.index % self.n == 0)

    @property
    def completion_tokens(self) -> int:
        return sum(c.completion_tokens for c in self.choices)


@dataclass(frozen=True)
class Streaming:
    ids: list[str]
    model: str
    events: AsyncIterator[TextDelta | Served]


class ModelNotFound(NotFound):
    """The request names a model this server does not serve (404)."""


@dataclass(frozen=True)
class _Plan:
    prompts: list[str]
    tasks: list[TaskRow]
    adapter: str | None  # what the generator is asked for (None: the alias)
    conditioned: bool
    params: Any
    ids: list[str]  # one per choice, prompt by prompt


class Serving:
    """The serving use case over the generation service (its generator, store, evaluator)."""

    def __init__(self, generation: Generation) -> None:
        self.generation = generation
        self.generator = generation.generator

    # -- models ---------------------------------------------------------------------------------
    def model_names(self) -> list[str]:
        """The alias, ``base`` and every adapter version the generator serves now."""
        live = [a.name for a in self.generator.list_adapters() if not a.retiring]
        return [self.generator.alias, BASE, *live]

    def check_model(self, model: str) -> None:
        """``ModelNotFound`` unless ``model`` is one a request may name."""
        self._adapter_for(model)

    def _adapter_for(self, model: str) -> str | None:
        """The generator's name for ``model`` (None: the alias); NotFound when not served."""
        if model == self.generator.alias:
            return None
        if model in (BASE, self.generator.model_name):
            return BASE
        if model in self.model_names():
            return model
        raise ModelNotFound(f"The model '{model}' does not exist; served: "
                            f"{self.model_names()}")

    # -- planning -------------------------------------------------------------------------------
    def _plan(self, what: ServeInput) -> _Plan:
        from service.generation import SamplingParams

        settings = self.generation.settings
        if bool(what.messages) == bool(what.prompts):
            raise InvalidRequest("give 'messages' (chat) or 'prompt' (completions)")
        check_limit(what.n, settings.max_n, "n", "LETI_MAX_N")
        check_limit(len(what.prompts) * what.n, settings.max_n, "prompts x n", "LETI_MAX_N")
        tokens = what.max_tokens or min(DEFAULT_NEW_TOKENS, settings.max_new_tokens)
        check_limit(tokens, settings.max_new_tokens, "max_tokens", "LETI_MAX_NEW_TOKENS")
        check_limit(len(what.tests), settings.max_tests, "the number of tests", "LETI_MAX_TESTS")
        adapter = self._adapter_for(what.model)
        conditioned = what.condition_on_good
        if conditioned is None:  # chat follows /v1/generate's rule; raw prompts go as given
            conditioned = bool(what.messages) and \
                self.generation.resolved_adapter(adapter) is not None
        if what.messages:
            prompts = [self._chat_prompt(what.messages, conditioned)]
            instructions = [_instruction(what.messages)]
        else:
            prompts = [marker_prefix(conditioned) + p for p in what.prompts]
            instructions = list(what.prompts)
        try:
            params = SamplingParams(n=what.n, temperature=what.temperature, top_p=what.top_p,
                                    max_new_tokens=tokens, stop=what.stop, seed=what.seed)
        except ValueError as exc:
            raise InvalidRequest(str(exc)) from exc
        tasks = [self._task(text, what) for text in instructions]
        ids = [new_id() for _ in range(len(prompts) * what.n)]
        return _Plan(prompts, tasks, adapter, conditioned, params, ids)

    def _chat_prompt(self, messages: Sequence[Message], conditioned: bool) -> str:
        from trainer.prompts import has_chat_template

        tokenizer = self.generation.tokenizer
        turns = [{"role": "system" if m.role == "developer" else m.role, "content": m.content}
                 for m in messages]
        if has_chat_template(tokenizer):
            try:
                chat = tokenizer.apply_chat_template(turns, tokenize=False,
                                                     add_generation_prompt=True)
            except Exception as exc:
                raise InvalidRequest(f"the model's chat template refused the messages: {exc}") \
                    from exc
        else:
            chat = "".join(f"{t['role']}: {t['content']}\n" for t in turns) + "assistant:"
        return marker_prefix(conditioned) + chat

    def _task(self, instruction: str, what: ServeInput) -> TaskRow:
        if not instruction.strip():
            raise InvalidRequest("the request has no text to answer (an empty prompt or no "
                                 "user message)")
        from sandbox import Job, JobError

        if what.tests:
            try:  # tests that do not compile are refused before anything is generated
                Job(program="", tests=what.tests, setup=what.setup)
            except JobError as exc:
                raise InvalidRequest(str(exc)) from exc
        with self.generation.store.write() as session:
            return ensure_user_task(session, instruction, list(what.tests), what.setup)

    # -- serving --------------------------------------------------------------------------------
    async def complete(self, what: ServeInput) -> Served:
        """Every choice, stored (and run, with tests) before this returns."""
        plan = await anyio.to_thread.run_sync(self._plan, what)
        outputs = await self.generator.generate(plan.prompts, plan.params, adapter=plan.adapter)
        return await self._finish(what, plan, outputs)

    async def stream(self, what: ServeInput) -> Streaming:
        """The choices' sample ids (fixed now), the answering model, and the events: text
        deltas as they come, then the ``Served`` record once everything is stored. Errors before
        the first event (a bad request, an unknown model, a backend down) are raised here, not
        inside the stream."""
        plan = await anyio.to_thread.run_sync(self._plan, what)
        if not self.generator.streams:  # generate, then replay the text as one delta
            outputs = await self.generator.generate(plan.prompts, plan.params,
                                                    adapter=plan.adapter)

            async def replay() -> AsyncIterator[TextDelta | Served]:
                for i, completion in enumerate(c for per in outputs for c in per):
                    yield TextDelta(i, completion.text)
                yield await self._finish(what, plan, outputs)
            model = next((c.adapter for per in outputs for c in per), None)
            return Streaming(plan.ids, model or BASE, replay())
        upstream = self.generator.stream(plan.prompts, plan.params, adapter=plan.adapter)
        first = await anext(upstream)  # raises the backend's refusal before any byte is sent

        async def relay() -> AsyncIterator[TextDelta | Served]:
            event = first
            while True:
                if isinstance(event, list):  # the backend's final completions
                    yield await self._finish(what, plan, event)
                    return
                yield TextDelta(event[0], event[1])
                event = await anext(upstream)
        model = self.generation.resolved_adapter(plan.adapter)
        return Streaming(plan.ids, model or BASE, relay())

    async def _finish(self, what: ServeInput, plan: _Plan, outputs: list[list[Any]]) -> Served:
        new: list[NewSample] = []
        flat: list[Any] = []
        for task, prompt, completions in zip(plan.tasks, plan.prompts, outputs, strict=True):
            for c in completions:
                sample_id = plan.ids[len(flat)]
                flat.append(c)
                new.append(NewSample(
                    id=sample_id, task_id=task.id, origin="generated", completion=c.text,
                    prompt=prompt, program=completion_program(task, c.text),
                    model=self.generator.model_name, adapter=c.adapter,
                    sampling=_sampling(plan.params), conditioned_on="good" if plan.conditioned
                    else None, prompt_tokens=c.prompt_tokens,
                    completion_tokens=c.completion_tokens, finish_reason=c.finish_reason))
        await anyio.to_thread.run_sync(self._store, new)
        metrics = self.generation.metrics
        for c in flat:
            metrics.generated_tokens.labels(c.adapter or BASE).inc(c.completion_tokens)
            metrics.samples.labels(c.adapter or BASE).inc()
        results: dict[str, Evaluated] = {}
        if what.tests:
            done = await self.generation.evaluator.evaluate(EvaluationInput(sample_ids=plan.ids))
            results = {r.sample_id: r for r in done}
        adapter = flat[0].adapter if flat else self.generation.resolved_adapter(plan.adapter)
        served = Served(model=adapter or BASE, n=what.n)
        served.choices = [Choice(i, plan.ids[i], c.text, c.finish_reason, c.prompt_tokens,
                                 c.completion_tokens, results.get(plan.ids[i]))
                          for i, c in enumerate(flat)]
        return served

    def _store(self, new: list[NewSample]) -> list[SampleRow]:
        with self.generation.store.write() as session:
            return add_samples(session, new)


def _instruction(messages: Sequence[Message]) -> str:
    """What a conversation asks, as a task's instruction: its last user message (the turn the
    answer responds to; a LETI triple rebuilds the prompt from it)."""
    users = [m.content for m in messages if m.role == "user"]
    return users[-1] if users else ""


def _sampling(params: Any) -> dict[str, Any]:
    return {"n": params.n, "temperature": params.temperature, "top_p": params.top_p,
            "max_new_tokens": params.max_new_tokens, "seed": params.seed,
            "stop": list(params.stop)}
