"""What each process of a job does to itself before it runs anything: read its job from its
pipe, and take the job's resource limits."""

from __future__ import annotations

import marshal
import os
import resource
from typing import Any


def set_limits(timeout: float, memory_mb: int) -> None:
    """CPU, address space, file size, processes, open files, no core dumps: the job's rlimits."""
    cpu = int(timeout) + 1
    limits = {
        resource.RLIMIT_CPU: (cpu, cpu + 1),
        resource.RLIMIT_AS: (memory_mb * 2**20, memory_mb * 2**20),
        resource.RLIMIT_FSIZE: (16 * 2**20, 16 * 2**20),
        resource.RLIMIT_NPROC: (64, 64),
        resource.RLIMIT_NOFILE: (256, 256),
        resource.RLIMIT_CORE: (0, 0),
    }
    for which, value in limits.items():
        try:
            resource.setrlimit(which, value)
        except (ValueError, OSError):
            pass  # a limit the platform refuses is enforced by the wall clock and the container


# A child reads its job into this buffer, allocated once in the runner: a fresh 64 KiB read
# buffer per child cost ~6 page faults of malloc bookkeeping. Larger jobs read the rest after it.
_JOB_BUFFER = memoryview(bytearray(1 << 16))


def _read_rest(fd: int, head: bytes) -> bytes:
    chunks = [head]
    while chunk := os.read(fd, 1 << 16):
        chunks.append(chunk)
    return b"".join(chunks)


def read_job(job_r: int) -> Any:
    """A child's job from its pipe (None: the runner had no job for it), the pipe closed."""
    view, size = _JOB_BUFFER, 0
    while size < len(view) and (n := os.readv(job_r, [view[size:]])):
        size += n
    data = view[:size] if size < len(view) else _read_rest(job_r, bytes(view))
    os.close(job_r)
    return marshal.loads(data) if size else None
