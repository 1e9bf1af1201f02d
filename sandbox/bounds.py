"""Hard bounds on what one local runner may use: processes and memory, whoever runs the service.

A job's rlimits are per process, and ``RLIMIT_NPROC`` does not bind uid 0: bubblewrap maps the
sandbox's uid back to the service's, so a fork bomb run by a service running as root was bounded
by nothing but its clock (~5,000 processes in 3 s). Each runner therefore starts inside a bound
of its own, the first of these the host offers:

- ``cgroup2``: a delegated cgroup v2 subtree (``pids.max``, ``memory.max`` with no swap, a CPU
  weight), one child cgroup per runner;
- ``cgroup1``: the v1 ``pids`` and ``memory`` hierarchies, where writable (root on a host
  without the unified hierarchy);
- ``uid``: the service runs as root but may not use cgroups: each runner runs as an
  unprivileged host uid of its own, so its namespace's ``RLIMIT_NPROC`` binds (memory stays
  bounded per process only: ``memory_mb`` times the process limit);
- ``userns``: the service is not root: the runner's user namespace counts its processes against
  ``RLIMIT_NPROC`` (64 per runner); memory as for ``uid``.

With none of these (root, no writable cgroup, an interpreter an unprivileged uid cannot read)
nothing bounds a fork bomb: ``choose_bounds`` says so, with what to do, and refuses unless the
policy is ``warn``. The runner is moved into its cgroup before it starts (a shell writes its own
pid into ``cgroup.procs``, then ``exec``s bubblewrap), so no process of it is ever outside.
"""

from __future__ import annotations

import itertools
import logging
import os
import shutil
import stat
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from sandbox.types import SandboxError

log = logging.getLogger(__name__)

BoundsPolicy = Literal["refuse", "warn"]
UID_BASE = 61000  # the unprivileged host uids of the ``uid`` bound: UID_BASE + runner number
UID_COUNT = 512
CGROUP_ROOT = Path("/sys/fs/cgroup")
# Sets the shell's own cgroup(s) from its arguments, up to "--", then becomes the runner command.
ENTER = 'for f; do [ "$f" = -- ] && break; echo 0 > "$f" || exit 125; shift; done; shift; exec "$@"'


@dataclass(frozen=True, slots=True)
class RunnerLimits:
    """What one local runner (the runner, its zygote and every job's processes) may use."""

    memory_mb: int = 1024  # all of the runner's processes together, no swap
    pids: int = 128  # processes and threads
    cpu_weight: int = 100  # cgroup v2 cpu.weight, relative to the service's own (100)

    def __post_init__(self) -> None:
        if self.memory_mb < 64 or self.pids < 16 or not 1 <= self.cpu_weight <= 10000:
            raise ValueError(f"runner limits too small or invalid: {self} "
                             "(memory_mb >= 64, pids >= 16, 1 <= cpu_weight <= 10000)")


@dataclass
class Bounds:
    """How the runners of one pool are held (``kind``); ``wrap`` prefixes a runner's command."""

    kind: str
    limits: RunnerLimits
    processes_bounded: bool = True
    memory_bounded: bool = True
    parents: list[Path] = field(default_factory=list)  # this pool's cgroup dirs, one per hierarchy
    _numbers: itertools.count = field(default_factory=itertools.count)
    _live: dict[int, list[Path]] = field(default_factory=dict)

    def describe(self) -> str:
        what = {"cgroup2": "a cgroup v2 per runner", "cgroup1": "cgroup v1 pids and memory per runner",
                "uid": "an unprivileged uid per runner (RLIMIT_NPROC)",
                "userns": "the runner's user namespace (RLIMIT_NPROC)", "none": "nothing"}[self.kind]
        memory = (f"{self.limits.memory_mb} MiB" if self.memory_bounded
                  else "per process only (each job's memory_mb)")
        processes = f"{self.limits.pids}" if self.kind.startswith("cgroup") else "64 per runner"
        return (f"{what}: processes {processes if self.processes_bounded else 'unbounded'}, "
                f"memory {memory}")

    def wrap(self, command: list[str]) -> tuple[int, list[str]]:
        """A number for a new runner and the command that starts it inside its bound."""
        number = next(self._numbers)
        if self.kind == "uid":
            uid = UID_BASE + number % UID_COUNT
            setpriv = shutil.which("setpriv") or "setpriv"
            return number, [setpriv, f"--reuid={uid}", f"--regid={uid}", "--clear-groups",
                            "--", *command]
        if not self.kind.startswith("cgroup"):
            return number, command
        dirs = [self._make_runner_cgroup(parent, number) for parent in self.parents]
        self._live[number] = dirs
        procs = [str(d / "cgroup.procs") for d in dirs]
        return number, ["/bin/sh", "-c", ENTER, "sh", *procs, "--", *command]

    def release(self, number: int) -> None:
        """The runner ``number`` has ended: remove its cgroups."""
        for path in self._live.pop(number, []):
            _rmdir(path)

    def close(self) -> None:
        for number in list(self._live):
            self.release(number)
        for parent in self.parents:
            _rmdir(parent)

    def _make_runner_cgroup(self, parent: Path, number: int) -> Path:
        path = parent / f"runner-{number}"
        path.mkdir()
        memory = self.limits.memory_mb * 2**20
        settings = {"pids.max": self.limits.pids, "memory.max": memory, "memory.swap.max": 0,
                    "cpu.weight": self.limits.cpu_weight, "memory.limit_in_bytes": memory,
                    "memory.memsw.limit_in_bytes": memory}
        for name, value in settings.items():  # each hierarchy has some of these files
            if (path / name).exists():
                (path / name).write_text(f"{value}\n")
        return path


def _rmdir(path: Path) -> None:
    """Remove a cgroup once its last process has gone (the kernel reaps them just after)."""
    for attempt in range(50):
        try:
            path.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError as exc:
            if attempt == 49:
                log.warning("could not remove the sandbox cgroup %s: %s", path, exc)
            time.sleep(0.01)


def _own_cgroup(hierarchy: str) -> str | None:
    """This process's cgroup path in a hierarchy ('' for the v2 one, else a controller name)."""
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if (hierarchy == "" and controllers == "") or hierarchy in controllers.split(","):
            return path
    return None


def _cgroup2_mount() -> Path | None:
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        if right.split(" ", 1)[0] == "cgroup2":
            return Path(left.split(" ")[4])
    return None


def _cgroup2_parent(limits: RunnerLimits) -> Path | None:
    """A new cgroup v2 directory for this pool's runners, with pids and memory delegated."""
    mount, path = _cgroup2_mount(), _own_cgroup("")
    if mount is None or path is None:
        return None
    base = mount / path.lstrip("/")
    wanted = {"pids", "memory"}
    if not wanted <= set((base / "cgroup.controllers").read_text().split()):
        return None
    optional = {"cpu"} & set((base / "cgroup.controllers").read_text().split())
    enabled = set((base / "cgroup.subtree_control").read_text().split())
    if not wanted <= enabled:
        if path != "/" and (base / "cgroup.procs").read_text().split():
            # "No internal processes": the service's own processes move to a leaf first (what a
            # systemd unit with Delegate=yes expects of its service).
            leaf = base / "leti-service"
            leaf.mkdir(exist_ok=True)
            for pid in (base / "cgroup.procs").read_text().split():
                (leaf / "cgroup.procs").write_text(pid)
        (base / "cgroup.subtree_control").write_text(" ".join(f"+{c}" for c in wanted | optional))
    parent = base / f"leti-sandbox-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    parent.mkdir()
    (parent / "cgroup.subtree_control").write_text(" ".join(f"+{c}" for c in wanted | optional))
    return parent


def _cgroup1_parents() -> list[Path] | None:
    """This pool's directories in the v1 pids and memory hierarchies (where writable)."""
    parents = []
    for controller in ("pids", "memory"):
        own = _own_cgroup(controller)
        base = CGROUP_ROOT / controller
        if own is None or not (base / "cgroup.procs").exists():
            return None
        parents.append(base / own.lstrip("/") / f"leti-sandbox-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    made = []
    try:
        for parent in parents:
            parent.mkdir()
            made.append(parent)
    except OSError:
        for parent in made:
            _rmdir(parent)
        return None
    return parents


def _readable_by_anyone(path: Path) -> bool:
    """Whether every directory up to ``path`` lets others in, and ``path`` lets them read."""
    path = Path(os.path.realpath(path))
    for step in [*reversed(path.parents), path]:
        mode = step.stat().st_mode
        if stat.S_ISDIR(mode) and not mode & stat.S_IXOTH:
            return False
    return bool(path.stat().st_mode & stat.S_IROTH)


def probe_bounds(limits: RunnerLimits, needed: list[Path]) -> Bounds:
    """The strongest bound this host offers (``needed``: what an unprivileged uid must read)."""
    for attempt in ("cgroup2", "cgroup1"):
        try:
            if attempt == "cgroup2" and (parent := _cgroup2_parent(limits)) is not None:
                return Bounds("cgroup2", limits, parents=[parent])
            if attempt == "cgroup1" and (parents := _cgroup1_parents()) is not None:
                return Bounds("cgroup1", limits, parents=parents)
        except OSError as exc:  # read-only /sys/fs/cgroup, no delegation: try the next way
            log.debug("sandbox bounds: %s not usable: %s", attempt, exc)
    if os.geteuid() != 0:
        return Bounds("userns", limits, memory_bounded=False)
    if shutil.which("setpriv") and all(_readable_by_anyone(p) for p in needed):
        return Bounds("uid", limits, memory_bounded=False)
    return Bounds("none", limits, processes_bounded=False, memory_bounded=False)


NO_BOUND_HELP = (
    "nothing on this host bounds the processes of a sandbox runner: the service runs as root, "
    "cannot create cgroups (cgroup v2 with pids and memory delegated, or writable v1 pids/memory "
    "hierarchies), and an unprivileged uid cannot read the interpreter or the runner. A fork "
    "bomb could exhaust the host's processes. Fix one of: run the service as a non-root user; "
    "delegate a cgroup to it (systemd: Delegate=yes; docker: --cgroupns=private with a writable "
    "/sys/fs/cgroup); install the interpreter where any user can read it; or use the docker "
    "backend. LETI_SANDBOX_BOUNDS=warn starts anyway."
)


def choose_bounds(limits: RunnerLimits, policy: BoundsPolicy, needed: list[Path]) -> Bounds:
    """Probe the host once, say what holds the runners, refuse an unbounded one unless warned."""
    bounds = probe_bounds(limits, needed)
    if not bounds.processes_bounded:
        if policy == "refuse":
            raise SandboxError(NO_BOUND_HELP)
        log.warning("sandbox: %s", NO_BOUND_HELP)
    elif not bounds.memory_bounded:
        log.warning("sandbox: runners are held by %s; for a bound on each runner's total memory "
                    "give the service a delegated cgroup", bounds.describe())
    else:
        log.info("sandbox: runners are held by %s", bounds.describe())
    return bounds
