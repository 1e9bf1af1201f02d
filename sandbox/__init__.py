"""Run untrusted programs against tests, and turn what happens into LETI's textual feedback.

This package imports nothing from ``service`` or ``trainer``. Entry points:
``make_sandbox`` (a backend: local bubblewrap runners or a docker container pool),
``Job``/``Outcome`` (sandbox/types.py) and ``render_feedback`` (sandbox/feedback.py).
"""

from __future__ import annotations

from typing import Any, Literal, overload

from sandbox.feedback import render_feedback
from sandbox.pool import RunnerPool
from sandbox.types import Job, JobError, Outcome, SandboxError, Status

Backend = Literal["local", "docker"]

__all__ = ["Backend", "Job", "JobError", "Outcome", "RunnerPool", "SandboxError", "Status",
           "make_sandbox", "render_feedback"]


# Each backend takes its own constructor's keyword options (sandbox/local.py LocalSandbox,
# sandbox/docker_pool.py DockerSandbox); the overloads say which, so that callers are checked.
@overload
def make_sandbox(backend: Literal["local"] = "local", workers: int | None = None, *,
                 jobs_per_runner: int = ..., pin_cpus: bool = ..., memory_mb: int = ...,
                 pids: int = ..., bounds: Literal["refuse", "warn"] = ...) -> RunnerPool: ...


@overload
def make_sandbox(backend: Literal["docker"], workers: int | None = None, *,
                 jobs_per_runner: int = ..., image: str = ..., memory_mb: int = ...,
                 pids: int = ..., cpus: float = ..., tmpfs_mb: int = ...,
                 pin_cpus: bool = ...) -> RunnerPool: ...


def make_sandbox(backend: Backend = "local", workers: int | None = None,
                 **options: Any) -> RunnerPool:
    """Build a sandbox backend; heavy dependencies (the docker SDK) load only when chosen.

    ``options`` are checked against the chosen backend by the overloads above and, at run time,
    by its constructor (an option the backend lacks is a TypeError)."""
    if backend == "local":
        from sandbox.local import LocalSandbox

        return LocalSandbox(workers=workers, **options)
    if backend == "docker":
        from sandbox.docker_pool import DockerSandbox

        return DockerSandbox(workers=workers, **options)
    raise ValueError(f"unknown sandbox backend {backend!r}: choose 'local' or 'docker'")
