"""One runner as a pool sees it: what starts it in either backend (its package, command,
environment and options) and the ``Channel`` it is spoken to over.

The runner is the package ``sandbox/runner`` (standard library only). Both backends put the
whole directory at ``SANDBOX_RUNNER`` inside the sandbox, read-only: bubblewrap binds it, the
image copies it (``sandbox/Dockerfile``, which the image's digest, ``runner_files``, covers).
"""

from __future__ import annotations

import json
import time
from abc import ABC, abstractmethod
from pathlib import Path

RUNNER_PACKAGE = Path(__file__).with_name("runner")  # this checkout's runner
SANDBOX_RUNNER = "/opt/leti/runner"  # where both backends put it
# The runner's environment in both backends (nothing of the host's). LD_BIND_NOW: the dynamic
# linker resolves every symbol when the runner starts, not lazily on first call in each job's
# child, where each lazy binding wrote a page of the runner's (~17 faults per job).
RUNNER_ENVIRONMENT = {"LD_BIND_NOW": "1"}


def runner_command(python: str) -> list[str]:
    """The command that starts the runner inside the sandbox, in its own PID namespace.

    Its entry file, not the directory: Python runs a directory through ``runpy``, whose frames
    would sit under every job's and leave the program less recursion depth."""
    return [python, "-I", "-S", "-B", f"{SANDBOX_RUNNER}/__main__.py", "--sweep"]


def runner_files() -> list[Path]:
    """The runner package's files, in a fixed order (not Python's caches): what the image
    copies and its digest covers."""
    return sorted(path for path in RUNNER_PACKAGE.rglob("*") if path.is_file()
                  and "__pycache__" not in path.relative_to(RUNNER_PACKAGE).parts)


def runner_options(cpu_slot: int | None) -> list[str]:
    """The runner's command-line options for one runner of a pool (after ``--sweep``)."""
    return [] if cpu_slot is None else ["--cpu-slot", str(cpu_slot)]


class ChannelLost(Exception):
    """The runner behind a channel died or stopped answering."""


class Channel(ABC):
    """One warm runner that answers one JSON line per JSON line it is sent."""

    @abstractmethod
    def send(self, line: bytes) -> None: ...

    @abstractmethod
    def _read(self, deadline: float) -> bytes:
        """Some bytes of the runner's stdout ('' at EOF), waiting at most until ``deadline``."""

    @abstractmethod
    def close(self) -> None: ...

    def __init__(self) -> None:
        self._buffer = bytearray()
        self.jobs_done = 0

    def submit(self, payload: dict) -> None:
        """Send one job; the runner answers the jobs it is sent one at a time, in order."""
        self.send((json.dumps(payload) + "\n").encode())

    def reply(self, timeout: float) -> dict:
        """The runner's answer to the oldest job not yet answered, waiting at most ``timeout``
        seconds from now; ``ChannelLost`` if the runner is gone."""
        deadline = time.monotonic() + timeout
        while (newline := self._buffer.find(b"\n")) < 0:
            chunk = self._read(deadline)
            if not chunk:
                raise ChannelLost("the runner closed its output")
            self._buffer += chunk
        line, self._buffer = bytes(self._buffer[:newline]), self._buffer[newline + 1:]
        self.jobs_done += 1
        return json.loads(line)

    def request(self, payload: dict, timeout: float) -> dict:
        """Send one job, return the runner's reply; ``ChannelLost`` if the runner is gone."""
        self.submit(payload)
        return self.reply(timeout)
