"""The local backend: runners on the host, each inside its own bubblewrap namespaces.

Every runner gets new user, PID, network, mount, IPC and UTS namespaces. Its root is built from
read-only binds of the system directories and the interpreter, a private ``/proc`` and ``/dev``,
and a private tmpfs at ``/tmp`` for the jobs' scratch directories. So a program has no network
(only a downed loopback), sees no host process, cannot read the host's files outside those
read-only system paths, cannot write anywhere on the host, and inherits no environment.
"""

from __future__ import annotations

import os
import select
import shutil
import subprocess
import sys
import time
from pathlib import Path

from sandbox.bounds import Bounds, BoundsPolicy, RunnerLimits, choose_bounds
from sandbox.channel import (
    RUNNER_ENVIRONMENT,
    RUNNER_PACKAGE,
    SANDBOX_RUNNER,
    Channel,
    ChannelLost,
    runner_command,
    runner_files,
    runner_options,
)
from sandbox.pool import RunnerPool
from sandbox.types import SandboxError

SANDBOX_UID = 65534  # nobody


def interpreter() -> Path:
    """The real interpreter binary (not a venv symlink): jobs run with the standard library only."""
    return Path(os.path.realpath(getattr(sys, "_base_executable", sys.executable)))


def bwrap_command(python: Path | None = None) -> list[str]:
    """The bubblewrap command line that starts one sandboxed runner."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        raise SandboxError(
            "the local sandbox needs bubblewrap: install it with `apt-get install bubblewrap` "
            "(scripts/install.sh does), or use the docker backend"
        )
    python = python or interpreter()
    cmd = [
        bwrap, "--unshare-all", "--die-with-parent", "--new-session", "--cap-drop", "ALL",
        "--as-pid-1",  # the runner is the namespace's init: see sandbox/runner/startup.py
        "--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_UID), "--hostname", "sandbox",
        "--clearenv", "--setenv", "PATH", "/usr/bin:/bin",
        *(arg for name, value in RUNNER_ENVIRONMENT.items() for arg in ("--setenv", name, value)),
        "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp",
        "--ro-bind", "/usr", "/usr",
    ]
    for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        if os.path.islink(top):
            cmd += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            cmd += ["--ro-bind", top, top]
    prefix = Path(os.path.realpath(sys.base_prefix))
    if not python.is_relative_to("/usr"):
        cmd += ["--ro-bind", str(prefix), str(prefix)]
        if not python.is_relative_to(prefix):
            cmd += ["--ro-bind", str(python), str(python)]
    # The whole package, read-only: nothing a job writes can be imported by the runner's
    # processes (the judge imports the modules the program's names refer to).
    cmd += ["--ro-bind", str(RUNNER_PACKAGE), SANDBOX_RUNNER]
    return cmd + runner_command(str(python))


class ProcessChannel(Channel):
    """A runner process spoken to over its stdin and stdout pipes."""

    def __init__(self, cmd: list[str], on_close=None) -> None:
        super().__init__()
        self._on_close = on_close
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            env={}, close_fds=True, start_new_session=True,  # no secret of ours crosses over
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None  # both are PIPEs
        self._stdin, self._stdout = self.proc.stdin, self.proc.stdout
        self._out = self._stdout.fileno()

    def send(self, line: bytes) -> None:
        try:
            self._stdin.write(line)
            self._stdin.flush()
        except (BrokenPipeError, ValueError) as exc:
            raise ChannelLost(f"the runner stopped reading: {exc}") from exc

    def _read(self, deadline: float) -> bytes:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not select.select([self._out], [], [], remaining)[0]:
            raise ChannelLost("the runner did not answer in time")
        return os.read(self._out, 1 << 16)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()  # bwrap --die-with-parent takes the whole namespace with it
        self.proc.wait()
        for stream in (self._stdin, self._stdout):
            try:
                stream.close()
            except OSError:
                pass
        if self._on_close is not None:
            self._on_close()


class LocalSandbox(RunnerPool):
    """The embedded default: a pool of bubblewrap-isolated runners on this host, each held by a
    bound on its processes and memory (``sandbox/bounds.py``: ``memory_mb`` and ``pids`` for
    all of one runner's processes together; ``bounds`` says what to do on a host with none)."""

    def __init__(self, workers: int | None = None, jobs_per_runner: int = 500,
                 pin_cpus: bool = True, memory_mb: int = 1024, pids: int = 128,
                 bounds: BoundsPolicy = "refuse") -> None:
        self.command = bwrap_command()
        python = interpreter()
        self.bounds: Bounds = choose_bounds(RunnerLimits(memory_mb=memory_mb, pids=pids), bounds,
                                            [python, RUNNER_PACKAGE, *runner_files()])
        super().__init__(self._start_runner, workers or default_workers(), jobs_per_runner,
                         pin_cpus)

    def _start_runner(self, slot: int | None) -> ProcessChannel:
        number, command = self.bounds.wrap(self.command + runner_options(slot))
        try:
            channel = ProcessChannel(command, on_close=lambda: self.bounds.release(number))
        except BaseException:
            self.bounds.release(number)
            raise
        return channel

    def close(self) -> None:
        super().close()
        self.bounds.close()


def default_workers() -> int:
    return max(2, os.cpu_count() or 2)
