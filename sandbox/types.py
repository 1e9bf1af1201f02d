"""The sandbox's vocabulary: a job to run, the outcome of running it, and its two kinds of error.

Program failures (a wrong answer, an exception, a timeout) are *outcomes*: feedback for the model.
Faults of the sandbox itself (no engine, a runner that keeps dying) are *exceptions*: they are
retried or reported to the operator and never shown to the model as feedback.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any


class Status(StrEnum):
    """How a program ended. Only ``PASSED`` means every test ran to completion and held."""

    PASSED = "passed"
    FAILED = "failed"  # an assertion of the tests did not hold
    ERROR = "error"  # an exception (see ``Outcome.error_type``)
    SYNTAX_ERROR = "syntax_error"
    TIMEOUT = "timeout"
    MEMORY = "memory"
    CRASHED = "crashed"  # killed by a signal, or ended the interpreter before the tests finished


class JobError(ValueError):
    """The job itself is malformed (not the program's fault): say what to fix."""


class SandboxError(RuntimeError):
    """The sandbox could not run a job (engine missing, a runner that cannot start, the pool
    closed): never a program's outcome. A runner lost twice under one job is the program's doing
    (an outcome, ``crashed``), see ``pool.py``."""


DEFAULT_TIMEOUT_S = 5.0
DEFAULT_MEMORY_MB = 1024
MAX_PROGRAM_BYTES = 256 * 1024


@dataclass(frozen=True, slots=True)
class Job:
    """A program and the test statements to run after it.

    MBPP: ``tests`` are the ``assert`` lines and ``setup`` is ``test_setup_code``.
    HumanEval: ``tests`` are ``[test_code, f"check({entry_point})"]``.
    """

    program: str
    tests: tuple[str, ...]
    setup: str = ""
    timeout: float = DEFAULT_TIMEOUT_S
    memory_mb: int = DEFAULT_MEMORY_MB
    id: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.program, str):
            raise JobError("'program' must be a string")
        if len(self.program.encode("utf-8", "replace")) > MAX_PROGRAM_BYTES:
            raise JobError(f"'program' is larger than {MAX_PROGRAM_BYTES} bytes")
        if isinstance(self.tests, str) or not all(isinstance(t, str) for t in self.tests):
            raise JobError("'tests' must be a list of Python statements (strings)")
        object.__setattr__(self, "tests", tuple(self.tests))
        if not isinstance(self.setup, str):
            raise JobError("'setup' must be a string")
        _check_compiles(self.tests, self.setup)
        if isinstance(self.timeout, bool) or not isinstance(self.timeout, (int, float)) \
                or not 0 < self.timeout <= 300:
            raise JobError("'timeout' must be a number of seconds in (0, 300]")
        if isinstance(self.memory_mb, bool) or not isinstance(self.memory_mb, int) \
                or not 32 <= self.memory_mb <= 65536:
            raise JobError("'memory_mb' must be an integer number of MiB in [32, 65536]")

    @classmethod
    def from_dict(cls, data: Any) -> Job:
        """Build a job from a JSON object (the ``leti sandbox check`` line format)."""
        if not isinstance(data, dict):
            raise JobError("a job must be a JSON object")
        missing = [k for k in ("program", "tests") if k not in data]
        if missing:
            raise JobError(f"missing field(s): {', '.join(missing)}")
        if not isinstance(data["tests"], list):
            raise JobError("'tests' must be a list of Python statements (strings)")
        job_id = data.get("id")
        return cls(
            program=data["program"],
            tests=tuple(data["tests"]),
            setup=data.get("setup") or "",
            timeout=data.get("timeout", DEFAULT_TIMEOUT_S),
            memory_mb=data.get("memory_mb", DEFAULT_MEMORY_MB),
            id=None if job_id is None else str(job_id),
        )

    def to_wire(self) -> dict[str, Any]:
        return {"id": self.id, "program": self.program, "tests": list(self.tests),
                "setup": self.setup, "timeout": float(self.timeout), "memory_mb": self.memory_mb}


def _check_compiles(tests: tuple[str, ...], setup: str) -> None:
    """Tests and setup are ours, not the model's: if they do not compile the job is malformed."""
    from sandbox.runner.names import test_file
    from sandbox.runner.plans import compile_setup, instrument

    for i, src in enumerate(tests, start=1):
        try:
            instrument(src, test_file(i))
        except (SyntaxError, ValueError) as exc:
            raise JobError(f"test {i} is not valid Python: {getattr(exc, 'msg', exc)}") from None
    try:
        compile_setup(setup)
    except (SyntaxError, ValueError) as exc:
        raise JobError(f"'setup' is not valid Python: {getattr(exc, 'msg', exc)}") from None


@dataclass(slots=True)
class Outcome:
    """What happened when a job ran: the status plus everything feedback needs."""

    status: Status
    id: str | None = None
    error_type: str | None = None  # e.g. "NameError", "AssertionError", "Timeout", "SIGSEGV"
    message: str = ""
    phase: str | None = None  # "program", "setup" or "test": where an exception came from
    failed_test: int | None = None  # 1-based index into Job.tests
    failed_assertion: str | None = None  # the assert statement that failed, as written
    expected: str | None = None  # repr (truncated) of the expected value of a failed `==`
    actual: str | None = None  # repr (truncated) of what the program returned
    note: str | None = None
    traceback: str = ""  # trimmed to the program's and the tests' frames
    tests_passed: int = 0
    tests_total: int = 0
    stdout: str = ""  # bounded tail
    stderr: str = ""  # bounded tail
    duration_ms: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.status is Status.PASSED

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> Outcome:
        known = {f for f in cls.__dataclass_fields__ if f not in ("status", "extra")}
        kwargs = {k: v for k, v in data.items() if k in known}
        return cls(status=Status(data["status"]), **kwargs)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["status"] = self.status.value
        return data
