"""Run untrusted programs against tests, and turn what happens into LETI's textual feedback.

This package imports nothing from ``service`` or ``trainer``. Entry points:
``make_sandbox`` (a backend: local bubblewrap runners or a docker container pool),
``Job``/``Outcome`` (sandbox/types.py) and ``render_feedback`` (sandbox/feedback.py).
"""

from __future__ import annotations

from typing import Literal

from sandbox.feedback import render_feedback
from sandbox.pool import RunnerPool
from sandbox.types import Job, JobError, Outcome, SandboxError, Status

Backend = Literal["local", "docker"]

__all__ = ["Backend", "Job", "JobError", "Outcome", "RunnerPool", "SandboxError", "Status",
           "make_sandbox", "render_feedback"]


def make_sandbox(backend: Backend = "local", workers: int | None = None, **options: object) -> RunnerPool:
    """Build a sandbox backend; heavy dependencies (the docker SDK) load only when chosen."""
    if backend == "local":
        from sandbox.local import LocalSandbox

        return LocalSandbox(workers=workers, **options)
    if backend == "docker":
        from sandbox.docker_pool import DockerSandbox

        return DockerSandbox(workers=workers, **options)
    raise ValueError(f"unknown sandbox backend {backend!r}: choose 'local' or 'docker'")
