"""What a job leaves behind, removed before the next: its processes and its files."""

from __future__ import annotations

import os
import signal
import stat
import time

JOB_DIR = "job"  # each runner's scratch directory, under its own private root


def reset_scratch(workdir: str, sweep: bool) -> None:
    """Leave ``workdir`` empty and owner-only, as the next job must find it.

    With ``sweep`` (a private root for this runner alone) anything else a job left in the root
    goes too. The common case, a job that wrote no file, costs one ``listdir``.
    """
    root = os.path.dirname(workdir)
    if sweep:
        for entry in os.listdir(root):
            if entry != JOB_DIR:
                remove(os.path.join(root, entry))
    try:
        info = os.lstat(workdir)
        if stat.S_ISDIR(info.st_mode) and stat.S_IMODE(info.st_mode) == 0o700 and not os.listdir(workdir):
            return
    except OSError:
        pass
    remove(workdir)
    os.mkdir(workdir, 0o700)


def remove(path: str) -> None:
    """Delete a file, link or tree that a job left, whatever permissions it gave them."""
    if os.path.isdir(path) and not os.path.islink(path):
        for parent, dirs, _ in os.walk(path):
            for name in dirs:
                try:
                    os.chmod(os.path.join(parent, name), 0o700, follow_symlinks=False)
                except OSError:
                    pass
        try:
            os.chmod(path, 0o700)
        except OSError:
            pass
        import shutil  # rarely needed: not imported up front, so no job's fork copies it

        shutil.rmtree(path, ignore_errors=True)
    else:
        try:
            os.unlink(path)
        except OSError:
            pass


def private_dir(root: str) -> str:
    """A new owner-only directory under ``root`` (``tempfile`` would import ``random``, whose
    at-fork hook reseeds in every job's child)."""
    for attempt in range(100):
        path = os.path.join(root, f"leti-jobs-{os.getpid()}-{time.monotonic_ns()}-{attempt}")
        try:
            os.mkdir(path, 0o700)
            return path
        except FileExistsError:
            continue
    raise OSError(f"could not make a private directory under {root}")


def kill_group(pid: int) -> None:
    """Kill the process group ``pid`` leads (a job's process started its own)."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def sweep() -> None:
    """Kill every other process in this PID namespace (grandchildren that escaped the group)."""
    for _ in range(100):
        try:
            os.kill(-1, signal.SIGKILL)  # all processes we may signal, except us and the ns init
        except ProcessLookupError:
            break
        time.sleep(0.001)
        reap()


def reap() -> None:
    """Collect every child that has ended (orphans of a job become the runner's: a subreaper)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def alive(pid: int) -> bool:
    """Whether the child ``pid`` is still running (one that has ended is reaped)."""
    try:
        return os.waitpid(pid, os.WNOHANG) == (0, 0)
    except ChildProcessError:
        return False
