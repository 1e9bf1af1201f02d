"""The generator interface and the adapter bookkeeping both backends share.

A request names an adapter by its concrete name (``policy-v7``), by the alias (``policy``, or no
name at all: whatever is serving), or ``base``. The alias is resolved once, when the request is
admitted, and the request pins that concrete adapter until it returns; an adapter is unloaded only
after its pinned requests have finished. So a hot swap (load a new version, move the alias, retire
the old version) never changes the adapter under a request in flight, on either backend.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from service.generation.adapters import check_lora_dir
from service.generation.types import (
    DEFAULT_ROWS,
    AdapterError,
    AdapterInfo,
    AdapterNotFound,
    Completion,
    SamplingParams,
    ServingState,
    StreamEvent,
)

log = logging.getLogger(__name__)

BASE = "base"
# A generate call carries this many widths of samples (``Generator.prompts_per_call``).
CALL_WIDTHS = 4
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclass
class _Entry:
    path: str
    in_flight: int = 0
    retiring: bool = False


class Generator(ABC):
    """Samples completions and serves LoRA adapters by name; subclasses supply the backend.

    Callers use only what is declared here, so every backend answers them the same way."""

    # The model as results and stored samples name it (None: a backend that names none).
    model_name: str | None = None
    # The tokenizer the backend encodes with in this process (None: its server tokenizes).
    tokenizer: Any = None
    # Whether ``stream`` passes text on as it is decoded; if not, callers generate and replay.
    streams: bool = False

    def __init__(self, *, alias: str = "policy", max_lora_rank: int | None = 64,
                 drain_timeout_s: float = 600.0) -> None:
        if not _NAME.match(alias) or alias == BASE:
            raise ValueError(f"invalid adapter alias {alias!r}")
        self.alias = alias
        self.max_lora_rank = max_lora_rank
        self.drain_timeout_s = drain_timeout_s
        self._entries: dict[str, _Entry] = {}
        self._serving: str | None = None
        self._version = 0
        self._lock = threading.Lock()  # guards the bookkeeping, never held across a generation
        self._retirements: set[asyncio.Task[None]] = set()

    # -- backend hooks -----------------------------------------------------------------------
    @abstractmethod
    async def _generate(self, prompts: list[str], params: SamplingParams,
                        adapter: str | None) -> list[list[Completion]]:
        """``n`` completions per prompt from ``adapter`` (a concrete name, or None for base)."""

    @abstractmethod
    async def _load(self, name: str, path: str) -> None:
        """Make ``path`` servable under ``name`` without touching other adapters."""

    @abstractmethod
    async def _unload(self, name: str) -> None:
        """Free ``name``; called only once no request is pinned to it."""

    def _check_adapter(self, path: str) -> None:
        """Refuse what vLLM could not serve, on every backend (see ``adapters``)."""
        check_lora_dir(path, self.max_lora_rank)

    @property
    def rows(self) -> int:
        """Sequences the backend decodes together (a server batches on its own: the default)."""
        return DEFAULT_ROWS

    def prompts_per_call(self, n: int) -> int:
        """Prompts of ``n`` samples each that one ``generate`` call should carry: enough for
        ``CALL_WIDTHS`` times the backend's rows, so finished rows are refilled and only the
        call's end drains, yet few enough that callers report progress and commit as they go.
        The one rule for how the loop, the study and benchmark jobs split their problems."""
        return max(1, CALL_WIDTHS * self.rows // max(1, n))

    @property
    def decode_path(self) -> str:
        """How requests on the base model are decoded, for results to name: an in-process
        backend names its path; one that sends them to a server says so."""
        return "server"

    def describe(self) -> dict[str, Any]:
        """What a results file records about the generator (backend, model, dtype, ...)."""
        return {"backend": type(self).__name__, "model": self.model_name}

    def use_prompt_tokenizer(self, tokenizer: Any) -> None:
        """Encode prompts as training does with ``tokenizer``: only a backend that does not
        hold the prompts' tokenizer itself needs telling."""

    async def start(self) -> None:
        """Connect or warm up; called once by the API's lifespan before serving."""

    async def check(self) -> None:
        """Raise when the backend is not answering (readiness); a model in this process is."""

    async def close(self) -> None:
        """Wait for pending retirements; backends release their resources after this."""
        await self.wait_retired()

    # -- requests ----------------------------------------------------------------------------
    async def generate(self, prompts: Sequence[str], params: SamplingParams | None = None,
                       adapter: str | None = None) -> list[list[Completion]]:
        """``params.n`` completions for each prompt, from ``adapter`` (None: the alias)."""
        if isinstance(prompts, str):
            raise TypeError("prompts must be a list of strings, not one string")
        prompts = list(prompts)
        if not prompts:
            return []
        if any(not isinstance(p, str) or not p for p in prompts):
            raise ValueError("every prompt must be a non-empty string")
        params = params or SamplingParams()
        with self._pinned(adapter) as name:
            return await self._generate(prompts, params, name)

    def stream(self, prompts: Sequence[str], params: SamplingParams,
               adapter: str | None = None) -> AsyncIterator[StreamEvent]:
        """Text as it is decoded, then the completions; only backends whose ``streams`` is
        true pass text on (the others are asked to ``generate``)."""
        raise NotImplementedError(f"{type(self).__name__} does not stream: use generate")

    @contextmanager
    def _pinned(self, adapter: str | None) -> Iterator[str | None]:
        with self._lock:
            name = self._resolve(adapter)
            if name is not None:
                self._entries[name].in_flight += 1
        try:
            yield name
        finally:
            if name is not None:
                with self._lock:
                    self._entries[name].in_flight -= 1

    def _resolve(self, adapter: str | None) -> str | None:
        if adapter is None or adapter == self.alias:
            return self._serving
        if adapter == BASE:
            return None
        entry = self._entries.get(adapter)
        if entry is None or entry.retiring:
            raise AdapterNotFound(f"adapter {adapter!r} is not served; served: "
                                  f"{[BASE, self.alias, *self._live_names()]}")
        return adapter

    def _live_names(self) -> list[str]:
        return [n for n, e in self._entries.items() if not e.retiring]

    # -- adapters ----------------------------------------------------------------------------
    @property
    def serving(self) -> str | None:
        """The concrete adapter behind the alias (None: the base model)."""
        return self._serving

    def list_adapters(self) -> list[AdapterInfo]:
        """Every loaded adapter, with its in-flight count and whether it is being retired."""
        with self._lock:
            return [AdapterInfo(n, e.path, e.in_flight, e.retiring) for n, e in self._entries.items()]

    def state(self) -> ServingState:
        """Alias, serving adapter and the loaded adapters, for the API's status route."""
        return ServingState(self.alias, self._serving, self.list_adapters())

    async def load_adapter(self, name: str, path: str | Path) -> None:
        """Load a plain-LoRA adapter directory under ``name`` (the base model is not reloaded)."""
        if not isinstance(name, str) or not _NAME.match(name) or name in (BASE, self.alias):
            raise AdapterError(f"invalid adapter name {name!r}: letters, digits, '.', '_', '-'; "
                               f"not {BASE!r} or the alias {self.alias!r}")
        path = str(Path(path).expanduser().resolve())
        self._check_adapter(path)
        with self._lock:
            if name in self._entries:
                raise AdapterError(f"adapter {name!r} is already loaded; load new weights under a "
                                   "new name (see hot_swap)")
            self._entries[name] = _Entry(path, retiring=True)  # reserved, not yet requestable
        try:
            await self._load(name, path)
        except BaseException:
            with self._lock:
                del self._entries[name]
            raise
        with self._lock:
            self._entries[name].retiring = False
            self._bump_version(name)

    async def activate(self, name: str | None) -> None:
        """Point the alias at a loaded adapter (None or ``base``: the base model); instant."""
        with self._lock:
            target = None if name in (None, BASE) else self._resolve(name)
            self._serving = target

    async def unload_adapter(self, name: str) -> None:
        """Stop admitting requests for ``name``, wait for those in flight, then free it."""
        with self._lock:
            entry = self._entries.get(name)
            if entry is None:
                raise AdapterNotFound(f"adapter {name!r} is not loaded")
            if name == self._serving:
                raise AdapterError(f"adapter {name!r} is serving the alias {self.alias!r}; "
                                   "activate another adapter first")
            entry.retiring = True
        deadline = time.monotonic() + self.drain_timeout_s
        while entry.in_flight and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        if entry.in_flight:
            log.warning("unloading %s with %d requests still in flight after %.0f s",
                        name, entry.in_flight, self.drain_timeout_s)
        await self._unload(name)
        with self._lock:
            self._entries.pop(name, None)

    @property
    def version(self) -> int:
        """The newest version of the alias loaded so far (``policy-v7``: 7; none yet: 0)."""
        return self._version

    def next_version_name(self) -> str:
        """The next versioned name for the alias: ``policy-v1``, ``policy-v2``, ..."""
        with self._lock:
            return f"{self.alias}-v{self._version + 1}"

    def _adopt(self, name: str, path: str) -> None:
        """Record an adapter the backend already serves (found at start-up)."""
        with self._lock:
            self._entries[name] = _Entry(path)
            self._bump_version(name)

    def _bump_version(self, name: str) -> None:
        match = re.fullmatch(rf"{re.escape(self.alias)}-v(\d+)", name)
        if match:
            self._version = max(self._version, int(match.group(1)))

    async def hot_swap(self, path: str | Path, *, wait: bool = False) -> str:
        """Load ``path`` as the next version, move the alias to it, and retire the previous
        version once its requests have finished (in the background unless ``wait``)."""
        name = self.next_version_name()
        await self.load_adapter(name, path)
        with self._lock:
            previous, self._serving = self._serving, name
            if previous is not None:  # refuse new requests for it from now on
                self._entries[previous].retiring = True
        if previous is not None:
            task = asyncio.get_running_loop().create_task(self._retire(previous))
            self._retirements.add(task)
            task.add_done_callback(self._retirements.discard)
            if wait:
                await task
        return name

    async def _retire(self, name: str) -> None:
        try:
            await self.unload_adapter(name)
        except Exception:  # keep serving; the old version just stays loaded
            log.exception("could not retire adapter %s", name)

    async def wait_retired(self) -> None:
        """Wait until every background retirement has finished."""
        while self._retirements:
            await asyncio.gather(*list(self._retirements), return_exceptions=True)
