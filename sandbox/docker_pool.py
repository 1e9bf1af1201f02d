"""The docker backend: a warm pool of hardened containers, each running the same runner.

Each container runs the runner package ``sandbox/runner`` (copied into the image by
``sandbox/Dockerfile``) and
stays up: a job is one JSON line written to the container's attached stdin and one read back
from its stdout, not a container start. The container has no network, a read-only root with a
small ``noexec`` tmpfs at ``/tmp``, no capabilities, ``no-new-privileges``, uid/gid 65534 and
memory, process and CPU limits.

The runner is the container's PID 1, as it is its namespace's init in the local backend
(``sandbox/runner/startup.py``, ``main``): no other process holds its streams, a program cannot kill it
(the kernel keeps other processes' signals from a namespace's init), and its ``--sweep``
(``kill(-1)`` after each job) reaches every other process of that container alone. A program
that kills its own parent kills the runner's zygote: the job ends ``crashed`` and the runner
forks a new zygote. If the runner itself dies (killed from outside), the container ends, its
stream closes, and the pool (``sandbox/pool.py``) retries the job once on a fresh container,
then reports ``crashed``. The pool also replaces a container after ``jobs_per_runner`` jobs.
Containers are started with ``auto_remove``, so one whose stream is dropped (even by a crashed
client: the runner reads end of input and exits) removes itself. The image is labelled with the
digest of the runner package it was built from, and a pool refuses an image built from another runner
(grading would differ).
"""

from __future__ import annotations

import hashlib
import logging
import os
import select
import socket
import struct
import time
import uuid
from dataclasses import dataclass
from typing import Any

from sandbox.channel import (
    RUNNER_ENVIRONMENT,
    RUNNER_PACKAGE,
    Channel,
    ChannelLost,
    runner_command,
    runner_files,
    runner_options,
)
from sandbox.pool import RunnerPool
from sandbox.types import SandboxError

DEFAULT_IMAGE = "leti-sandbox:latest"
SANDBOX_USER = "65534:65534"  # nobody:nogroup
POOL_LABEL = "leti.sandbox.pool"  # every container carries its pool's id under this label
RUNNER_LABEL = "leti.runner.sha256"  # the image's runner digest (scripts/build-sandbox-image.sh)
START_HINT = "start dockerd: scripts/start-docker.sh"
BUILD_HINT = "build it: scripts/build-sandbox-image.sh"

log = logging.getLogger(__name__)

_HEADER = struct.Struct(">BxxxI")  # docker's multiplexed stream: kind (1 stdout, 2 stderr), size
_STDOUT = 1
DEFAULT_MEMORY_MB, DEFAULT_PIDS, DEFAULT_CPUS, DEFAULT_TMPFS_MB = 1024, 128, 1.0, 64


@dataclass(frozen=True, slots=True)
class ContainerLimits:
    """What one sandbox container may use; each job's own rlimits apply inside these."""

    memory_mb: int = DEFAULT_MEMORY_MB  # the whole container (runner + job), no swap
    pids: int = DEFAULT_PIDS
    cpus: float = DEFAULT_CPUS
    tmpfs_mb: int = DEFAULT_TMPFS_MB

    def __post_init__(self) -> None:
        if self.memory_mb < 64 or self.pids < 8 or not 0 < self.cpus <= 64 or self.tmpfs_mb < 1:
            raise ValueError(
                f"container limits too small or invalid: {self} "
                "(memory_mb >= 64, pids >= 8, 0 < cpus <= 64, tmpfs_mb >= 1)"
            )


def container_options(image: str, limits: ContainerLimits, labels: dict[str, str],
                      cpu_slot: int | None = None) -> dict[str, Any]:
    """The ``containers.create`` arguments that harden one runner container."""
    return {
        "image": image,
        "command": runner_command("python") + runner_options(cpu_slot),
        "init": False,  # the runner is PID 1 (see above)
        "user": SANDBOX_USER,
        "environment": dict(RUNNER_ENVIRONMENT),
        "working_dir": "/tmp",
        "hostname": "sandbox",
        "labels": labels,
        "stdin_open": True,
        "tty": False,
        "network_mode": "none",
        "read_only": True,
        "tmpfs": {"/tmp": f"rw,noexec,nosuid,nodev,size={limits.tmpfs_mb}m,mode=1777"},
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges"],
        "mem_limit": f"{limits.memory_mb}m",
        "memswap_limit": f"{limits.memory_mb}m",
        "pids_limit": limits.pids,
        "nano_cpus": int(limits.cpus * 1e9),
        "ipc_mode": "private",
        "log_config": {"type": "none", "config": {}},  # nothing a program prints reaches the disk
        "auto_remove": True,
    }


class _Demux:
    """Splits docker's multiplexed attach stream into frames and keeps only stdout payloads."""

    def __init__(self) -> None:
        self._raw = bytearray()

    def feed(self, data: bytes) -> bytes:
        self._raw += data
        out = bytearray()
        while len(self._raw) >= _HEADER.size:
            kind, size = _HEADER.unpack_from(self._raw)
            if len(self._raw) < _HEADER.size + size:
                break
            if kind == _STDOUT:
                out += self._raw[_HEADER.size:_HEADER.size + size]
            del self._raw[:_HEADER.size + size]
        return bytes(out)


class DockerChannel(Channel):
    """One runner container, spoken to over its attached stdin and stdout."""

    def __init__(self, client: Any, image: str, limits: ContainerLimits,
                 labels: dict[str, str], cpu_slot: int | None = None) -> None:
        super().__init__()
        import docker.errors

        try:
            self.container = client.containers.create(
                **container_options(image, limits, labels, cpu_slot))
        except docker.errors.ImageNotFound as exc:
            raise SandboxError(f"the sandbox image {image!r} is missing: {BUILD_HINT}") from exc
        try:
            # Attach before start: nothing can be written before the attach's HTTP response is
            # parsed, so no output is lost in its read-ahead buffer. JSON lines never carry raw
            # control bytes, so docker's detach keys (ctrl-p ctrl-q) cannot occur in a job.
            attached = self.container.attach_socket(params={"stdin": 1, "stdout": 1, "stream": 1})
            self._socket: socket.socket = getattr(attached, "_sock", attached)
            self._keepalive = attached  # owns the HTTP response the socket was hijacked from
            self.container.start()
        except BaseException:
            self._remove()
            raise
        self._demux = _Demux()

    def send(self, line: bytes) -> None:
        try:
            self._socket.sendall(line)
        except OSError as exc:
            raise ChannelLost(f"the runner container stopped reading: {exc}") from exc

    def _read(self, deadline: float) -> bytes:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([self._socket], [], [], remaining)[0]:
                raise ChannelLost("the runner container did not answer in time")
            chunk = self._socket.recv(1 << 16)
            if not chunk:
                return b""
            if out := self._demux.feed(chunk):
                return out

    def close(self) -> None:
        """Drop the stream and remove the container; never raises (a finished job may call it)."""
        try:
            self._socket.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        for closable in (self._socket, self._keepalive):
            try:
                closable.close()
            except OSError:
                pass
        self._remove()

    def _remove(self) -> None:
        import docker.errors

        try:
            self.container.remove(force=True)
        except docker.errors.NotFound:
            pass  # already gone (auto_remove after the runner exited)
        except docker.errors.APIError as exc:
            if exc.status_code != 409:  # 409: removal already in progress
                log.warning("could not remove sandbox container %s: %s", self.container.id, exc)
        except Exception as exc:  # noqa: BLE001 - engine gone: auto_remove cleans up after it
            log.warning("could not remove sandbox container %s: %s", self.container.id, exc)


def connect(timeout: float = 30.0) -> Any:
    """A docker SDK client for the engine in the environment (DOCKER_HOST or the local socket)."""
    try:
        import docker
    except ImportError as exc:
        raise SandboxError("the docker backend needs the docker SDK: pip install docker") from exc
    try:
        client = docker.from_env(timeout=int(timeout))
        client.ping()
    except docker.errors.DockerException as exc:
        raise SandboxError(f"the docker engine is not reachable ({exc}): {START_HINT}") from exc
    return client


def runner_digest() -> str:
    """The sha256 of this checkout's runner package, which the image must have been built from:
    each file's path and content, length-prefixed, in a fixed order. It is the one definition:
    scripts/build-sandbox-image.sh asks it for the label it gives the image."""
    digest = hashlib.sha256()
    for path in runner_files():
        name = path.relative_to(RUNNER_PACKAGE).as_posix().encode()
        content = path.read_bytes()
        for part in (name, content):
            digest.update(len(part).to_bytes(8, "big") + part)
    return digest.hexdigest()


def check_image(client: Any, image: str) -> None:
    """Refuse a missing image, or one built from another runner: grading would silently differ."""
    import docker.errors

    try:
        labels = client.images.get(image).labels or {}
    except docker.errors.ImageNotFound as exc:
        raise SandboxError(f"the sandbox image {image!r} is missing: {BUILD_HINT}") from exc
    except docker.errors.DockerException as exc:
        raise SandboxError(f"could not look up the sandbox image {image!r}: {exc}") from exc
    if labels.get(RUNNER_LABEL) != runner_digest():
        raise SandboxError(
            f"the sandbox image {image!r} was not built from this checkout's sandbox/runner package "
            f"(label {RUNNER_LABEL}={labels.get(RUNNER_LABEL)!r}): rebuild it: "
            "scripts/build-sandbox-image.sh"
        )


class DockerSandbox(RunnerPool):
    """A pool of warm, hardened runner containers on the local docker engine."""

    def __init__(
        self,
        workers: int | None = None,
        jobs_per_runner: int = 500,
        image: str = DEFAULT_IMAGE,
        memory_mb: int = DEFAULT_MEMORY_MB,
        pids: int = DEFAULT_PIDS,
        cpus: float = DEFAULT_CPUS,
        tmpfs_mb: int = DEFAULT_TMPFS_MB,
        pin_cpus: bool = True,
    ) -> None:
        self.limits = ContainerLimits(memory_mb=memory_mb, pids=pids, cpus=cpus, tmpfs_mb=tmpfs_mb)
        self.image = image
        self.client = connect()
        try:
            check_image(self.client, image)
        except BaseException:
            self.client.close()
            raise
        self.pool_id = uuid.uuid4().hex[:12]
        self.labels = {POOL_LABEL: self.pool_id}
        super().__init__(self._start_runner, workers or max(2, os.cpu_count() or 2),
                         jobs_per_runner, pin_cpus)

    def _start_runner(self, cpu_slot: int | None) -> DockerChannel:
        """Called by the pool's spawn thread; engine faults become errors that say what to do."""
        import docker.errors
        import requests

        try:
            return DockerChannel(self.client, self.image, self.limits, self.labels, cpu_slot)
        except (docker.errors.DockerException, requests.exceptions.ConnectionError) as exc:
            raise SandboxError(f"could not start a sandbox container ({exc}); if the engine "
                               f"stopped, {START_HINT}") from exc

    def containers(self) -> list[Any]:
        """This pool's live containers (for inspection and tests)."""
        return self.client.containers.list(filters={"label": f"{POOL_LABEL}={self.pool_id}"})

    def close(self) -> None:
        """Close the pool, then kill any container of ours still running (e.g. mid-job)."""
        super().close()
        import docker.errors

        try:
            for container in self.containers():
                try:
                    container.remove(force=True)
                except docker.errors.APIError:
                    pass  # already being removed
        except Exception as exc:  # noqa: BLE001 - the engine went away: auto_remove has them
            log.warning("could not list this pool's sandbox containers: %s", exc)
        self.client.close()
