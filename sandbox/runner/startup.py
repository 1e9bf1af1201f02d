"""The runner process: its options, its own protections, its scratch directory and environment,
and the request loop (one JSON job per line in, one JSON outcome per line out)."""

from __future__ import annotations

import ctypes
import json
import os
import sys
from typing import BinaryIO

from .cleanup import JOB_DIR, private_dir, remove, reset_scratch
from .parent import Runner

PR_SET_DUMPABLE = 4
PR_SET_CHILD_SUBREAPER = 36


def main(argv: list[str]) -> int:
    """The runner's whole life: refuse to run unprotected, then answer jobs until stdin ends."""
    sweep = "--sweep" in argv
    if sweep and not _in_own_pid_namespace():
        sys.stderr.write("runner: --sweep needs a dedicated PID namespace; refusing\n")
        return 2
    if "--cpu-slot" in argv:
        try:
            slot = int(argv[argv.index("--cpu-slot") + 1])
        except (IndexError, ValueError):
            sys.stderr.write("runner: --cpu-slot needs a whole number\n")
            return 2
        pin_to_cpu(slot)
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        prctl = None
    # Orphans of a job become ours to reap; and, not dumpable, neither this process nor the
    # zygote and job children forked from it can be opened through /proc/<pid>/fd or mem, or
    # traced, by a program running as the same user: without this a program could write an
    # outcome of its own ("passed") straight into our stdout. Both are required.
    if prctl is None or prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0 \
            or prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
        sys.stderr.write("runner: prctl failed; refusing to run jobs without it\n")
        return 2
    root = os.environ.get("TMPDIR", "/tmp")
    workdir_root = root if sweep else private_dir(root)
    workdir = os.path.join(workdir_root, JOB_DIR)
    reset_scratch(workdir, sweep)
    # What every job's child inherits: an environment with nothing of the host's in it, its
    # scratch directory as HOME and as the place for temporary files.
    os.environ.clear()
    os.environ.update({"PATH": "/usr/bin:/bin", "HOME": workdir, "TMPDIR": workdir,
                       "LANG": "C.UTF-8"})
    runner = Runner(workdir, sweep)
    try:
        serve(sys.stdin.buffer, sys.stdout.buffer, runner)
    finally:
        runner.close()
        if not sweep:
            remove(workdir_root)
    return 0


def serve(stdin: BinaryIO, stdout: BinaryIO, runner: Runner) -> None:
    """The request loop: one JSON job per line in, one JSON outcome per line out."""
    for raw in stdin:
        reply = runner.handle(raw)
        try:
            stdout.write((json.dumps(reply) + "\n").encode())
            stdout.flush()
        except BrokenPipeError:
            return  # whoever sent the jobs has gone


def pin_to_cpu(slot: int) -> None:
    """Keep this process, and the zygote and children it forks, on one CPU.

    The CPU is ``slot`` modulo the CPUs this process may use, so a pool numbering its runners
    0, 1, ... spreads them evenly. A job passes through the runner, the zygote and the child in
    turn; on one CPU each hand-over is a local wake-up that finds warm caches, where a wake-up
    on another CPU costs an interprocessor interrupt (a VM exit on a virtual machine). Where the
    platform refuses, the runner works unpinned."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpus[slot % len(cpus)]})
    except (AttributeError, OSError, ValueError):
        pass


def _in_own_pid_namespace() -> bool:
    """Only sweep with kill(-1) where that cannot reach anyone else's processes."""
    return os.getpid() <= 16
