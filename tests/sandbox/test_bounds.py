"""Each runner is held by a hard bound on its processes and memory, in both backends, and the
process running the sandbox (the service's) keeps working while a program hits the bound.

Local: a cgroup per runner (v2 delegated, or v1 where writable), else an unprivileged uid
(sandbox/bounds.py); docker: the container's pids and memory limits.
"""

from __future__ import annotations

import os
import subprocess
import textwrap
import threading
import time
from pathlib import Path

import pytest

from sandbox import Job, RunnerPool, Status
from sandbox.bounds import Bounds, RunnerLimits, probe_bounds

HONEST = Job("def f(x):\n    return x + 1\n", ("assert f(1) == 2",), timeout=5)
FORK_BOMB = textwrap.dedent("""
    import os
    while True:
        try:
            os.fork()
        except OSError:
            pass
""")
# Many processes that each touch 300 MB: well under each one's own limit (memory_mb), far over
# what one runner may hold together (1024 MiB).
MEMORY_BOMB = textwrap.dedent("""
    import os, time
    for _ in range(7):
        if os.fork() == 0:
            break
    block = b"x" * (300 * 2**20)
    time.sleep(2)
    def f(x):
        return x + 1
""")

pytestmark = pytest.mark.timeout(180)


def sandbox_processes() -> int:
    """Processes of any sandbox runner on this host (a local runner's cgroup, or a container's),
    so that other work on a shared machine does not count."""
    count = 0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                groups = Path(f"/proc/{entry}/cgroup").read_text()
            except OSError:
                continue
            count += "leti-sandbox-" in groups or "/docker/" in groups
    return count


def bound_of(sandbox: RunnerPool) -> tuple[int, int]:
    """(processes, MiB) one runner may hold, whichever backend."""
    limits = getattr(sandbox, "bounds", None)
    if limits is not None:
        return limits.limits.pids, limits.limits.memory_mb
    return sandbox.limits.pids, sandbox.limits.memory_mb  # type: ignore[attr-defined]


class Watch:
    """Samples, while a hostile job runs, the host's process count and (local) each runner's
    processes and memory as its cgroup counts them."""

    def __init__(self, sandbox: RunnerPool) -> None:
        self.bounds: Bounds | None = getattr(sandbox, "bounds", None)
        self.baseline = sandbox_processes()
        self.peak_host = self.peak_runner = self.peak_memory = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self.stop.is_set():
            self.peak_host = max(self.peak_host, sandbox_processes())
            if self.bounds is not None:
                for dirs in list(self.bounds._live.values()):
                    for path in dirs:
                        # The tasks the cgroup holds, not pids.current: the kernel charges a fork
                        # before it checks the limit and takes the charge back when over it, so
                        # under a fork bomb pids.current reads above pids.max for an instant.
                        for name in ("cgroup.threads", "tasks"):
                            if (path / name).exists() and (path / "pids.max").exists():
                                tasks = len((path / name).read_text().split())
                                self.peak_runner = max(self.peak_runner, tasks)
                        for name in ("memory.current", "memory.usage_in_bytes"):
                            if (path / name).exists():
                                self.peak_memory = max(self.peak_memory,
                                                       int((path / name).read_text()) // 2**20)
            time.sleep(0.02)

    def __enter__(self) -> Watch:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join(5)


def test_the_local_backend_holds_every_runner(local_sandbox: RunnerPool) -> None:
    bounds = local_sandbox.bounds  # type: ignore[attr-defined]
    assert bounds.processes_bounded, bounds.describe()
    if os.geteuid() == 0 and bounds.kind.startswith("cgroup"):
        assert bounds.memory_bounded
    local_sandbox.warm_up()
    if bounds.kind.startswith("cgroup"):
        for dirs in bounds._live.values():  # every live runner sits in cgroups of its own
            assert dirs and all(d.name.startswith("runner-") for d in dirs)


def test_fork_bomb_stays_under_the_runner_bound_while_the_sandbox_keeps_serving(
        sandbox: RunnerPool) -> None:
    pids, _ = bound_of(sandbox)
    sandbox.warm_up()
    done: list = []
    with Watch(sandbox) as watch:
        bomb = threading.Thread(target=lambda: done.append(sandbox.run(Job(FORK_BOMB, HONEST.tests,
                                                                           timeout=3))))
        bomb.start()
        time.sleep(0.5)  # the bomb is at its bound now
        served = 0
        while bomb.is_alive():
            # The other runner grades honest programs, and this process can still start threads
            # and processes of its own.
            assert sandbox.run(HONEST).status is Status.PASSED
            assert subprocess.run(["true"], check=False, timeout=10).returncode == 0
            side = threading.Thread(target=lambda: None)
            side.start()
            side.join()
            served += 1
        bomb.join()
    assert done and not done[0].passed
    assert served >= 1
    # The bomb's runner holds at most its bound; the other runner, a few processes.
    assert watch.peak_host - watch.baseline <= pids + 16, (watch.peak_host, watch.baseline)
    if watch.bounds is not None and watch.bounds.kind.startswith("cgroup"):
        assert 0 < watch.peak_runner <= pids
    deadline = time.monotonic() + 20  # killed processes take a moment to be torn down
    while sandbox_processes() - watch.baseline > 16 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert sandbox_processes() - watch.baseline <= 16  # all gone again
    assert sandbox.run(HONEST).status is Status.PASSED


def test_memory_bomb_stays_under_the_runner_bound(sandbox: RunnerPool) -> None:
    _, memory_mb = bound_of(sandbox)
    with Watch(sandbox) as watch:
        outcome = sandbox.run(Job(MEMORY_BOMB, HONEST.tests, timeout=6, memory_mb=900))
    # The kernel kills processes of the runner until it is under its bound; the program's own
    # process may be among the survivors (and then passes, having computed the right value).
    assert outcome.status in (Status.PASSED, Status.MEMORY, Status.CRASHED, Status.TIMEOUT)
    if watch.bounds is not None and watch.bounds.kind.startswith("cgroup"):
        assert 0 < watch.peak_memory <= memory_mb, watch.peak_memory
    assert sandbox.run(HONEST).status is Status.PASSED


def test_one_process_over_the_runner_bound_is_killed_for_memory(sandbox: RunnerPool) -> None:
    """A job allowed more than its runner may hold is stopped by the runner's bound."""
    program = "block = b'x' * (1500 * 2**20)\ndef f(x):\n    return x + 1\n"
    outcome = sandbox.run(Job(program, HONEST.tests, timeout=10, memory_mb=4096))
    assert outcome.status is Status.MEMORY, outcome
    assert sandbox.run(HONEST).status is Status.PASSED


def test_a_host_without_any_bound_is_refused_unless_warned(monkeypatch: pytest.MonkeyPatch) -> None:
    from sandbox import bounds as module
    from sandbox.types import SandboxError

    none = Bounds("none", RunnerLimits(), processes_bounded=False, memory_bounded=False)
    monkeypatch.setattr(module, "probe_bounds", lambda limits, needed: none)
    with pytest.raises(SandboxError, match="nothing on this host bounds the processes"):
        module.choose_bounds(RunnerLimits(), "refuse", [])
    assert module.choose_bounds(RunnerLimits(), "warn", []) is none


def test_probing_finds_a_bound_here() -> None:
    """On the machines this project runs on (root in CI and install.sh) there is one."""
    found = probe_bounds(RunnerLimits(), [Path("/usr/bin/env")])
    try:
        assert found.processes_bounded, found.describe()
    finally:
        found.close()


NPROC_PROBE = """
import os, resource, time
resource.setrlimit(resource.RLIMIT_NPROC, (64, 64))  # what a job's process gets
forked = 0
for _ in range(300):
    try:
        pid = os.fork()
    except OSError:
        break
    if pid == 0:
        time.sleep(2)
        os._exit(0)
    forked += 1
print(forked)
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="the uid bound is what a root service falls back to")
def test_the_uid_bound_makes_the_process_limit_bind_for_a_root_service() -> None:
    """Without cgroups a root service runs each runner as an unprivileged uid (Bounds "uid"):
    the same fork loop is then held at 64 processes, where as root it is not."""
    bwrap = ["bwrap", "--unshare-all", "--die-with-parent", "--ro-bind", "/", "/",
             "--uid", "65534", "--gid", "65534", "/usr/bin/python3", "-c", NPROC_PROBE]
    _, wrapped = Bounds("uid", RunnerLimits(), memory_bounded=False).wrap(bwrap)
    held = subprocess.run(wrapped, capture_output=True, text=True, timeout=60, check=True)
    as_root = subprocess.run(bwrap, capture_output=True, text=True, timeout=60, check=True)
    assert int(held.stdout) < 64 <= int(as_root.stdout)


def test_the_cgroup2_layout_written_for_a_delegated_subtree(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """The cgroup v2 path's file writes, on a directory laid out as a delegated cgroup v2 (this
    project's VMs have cgroup v1, where test_fork_bomb_... checks the kernel's side): the
    service's processes move to a leaf, the controllers are enabled, and each runner's cgroup
    gets its limits and is entered through cgroup.procs by the command that starts it."""
    from sandbox import bounds as module

    base = tmp_path / "system.slice" / "leti.service"
    base.mkdir(parents=True)
    (base / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    (base / "cgroup.subtree_control").write_text("\n")
    (base / "cgroup.procs").write_text("4242\n")
    monkeypatch.setattr(module, "_cgroup2_mount", lambda: tmp_path)
    monkeypatch.setattr(module, "_own_cgroup", lambda hierarchy: "/system.slice/leti.service")
    real_mkdir = Path.mkdir

    def mkdir(self: Path, *args: object, **kwargs: object) -> None:  # the kernel's files
        real_mkdir(self, *args, **kwargs)  # type: ignore[arg-type]
        for name in ("cgroup.procs", "cgroup.subtree_control", "pids.max", "memory.max",
                     "memory.swap.max", "cpu.weight"):
            (self / name).touch()

    monkeypatch.setattr(Path, "mkdir", mkdir)
    limits = RunnerLimits(memory_mb=512, pids=64, cpu_weight=50)
    parent = module._cgroup2_parent(limits)
    assert parent is not None and parent.parent == base
    assert (base / "leti-service" / "cgroup.procs").read_text() == "4242"
    assert set((base / "cgroup.subtree_control").read_text().split()) == {"+pids", "+memory", "+cpu"}
    bounds = Bounds("cgroup2", limits, parents=[parent])
    number, command = bounds.wrap(["bwrap", "runner"])
    runner = parent / f"runner-{number}"
    assert command[:3] == ["/bin/sh", "-c", module.ENTER]
    assert command[4:] == [str(runner / "cgroup.procs"), "--", "bwrap", "runner"]
    assert [(runner / n).read_text().strip() for n in ("pids.max", "memory.max", "memory.swap.max",
                                                       "cpu.weight")] == ["64", str(512 * 2**20), "0", "50"]
