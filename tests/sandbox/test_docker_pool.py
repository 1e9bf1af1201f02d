"""The docker backend for real: the engine, the image and hardened runner containers.

Needs a running engine (scripts/start-docker.sh) and the image (scripts/build-sandbox-image.sh);
scripts/install.sh does both. Nothing here is mocked: containers are inspected through the engine
and probed from inside by the programs they run.
"""

from __future__ import annotations

import asyncio
import io
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from sandbox import Job, RunnerPool, SandboxError, Status, make_sandbox, render_feedback
from sandbox.docker_pool import DEFAULT_IMAGE, POOL_LABEL, RUNNER_LABEL, DockerSandbox, connect

pytestmark = [pytest.mark.docker, pytest.mark.timeout(180)]

HONEST = Job("def f(x):\n    return x + 1\n", ("assert f(1) == 2",))


def probe(sandbox: RunnerPool, program: str, timeout: float = 5.0) -> str:
    """Run a program that prints what it found; it must pass, and its stdout is returned."""
    outcome = sandbox.run(Job(textwrap.dedent(program) + "\ndef f(x):\n    return x + 1\n",
                              ("assert f(1) == 2",), timeout=timeout))
    assert outcome.status is Status.PASSED, render_feedback(outcome)
    return outcome.stdout


def container_ids(pool: DockerSandbox) -> set[str]:
    return {c.id for c in pool.containers()}


@pytest.fixture
def small_pool() -> Iterator[DockerSandbox]:
    """One runner, recycled after 3 jobs, with limits unlike the defaults (to see them applied)."""
    with make_sandbox("docker", workers=1, jobs_per_runner=3, memory_mb=256, pids=64,
                      cpus=0.5) as pool:
        assert isinstance(pool, DockerSandbox)
        yield pool


def test_containers_are_hardened(small_pool: DockerSandbox) -> None:
    small_pool.warm_up()
    (container,) = small_pool.containers()
    container.reload()
    host, config = container.attrs["HostConfig"], container.attrs["Config"]
    assert host["NetworkMode"] == "none"
    assert host["ReadonlyRootfs"] is True
    assert host["CapDrop"] == ["ALL"] and not host["CapAdd"]
    assert "no-new-privileges" in host["SecurityOpt"]
    assert host["Privileged"] is False
    assert config["User"] == "65534:65534"
    assert host["Memory"] == 256 * 2**20 and host["MemorySwap"] == 256 * 2**20
    assert host["PidsLimit"] == 64
    assert host["NanoCpus"] == 500_000_000
    assert "noexec" in host["Tmpfs"]["/tmp"] and "size=64m" in host["Tmpfs"]["/tmp"]
    assert host["AutoRemove"] is True and not host["Init"]  # the runner is PID 1
    assert config["Labels"][POOL_LABEL] == small_pool.pool_id
    assert not any(var.startswith(("LETI", "HOME=/root")) for var in config["Env"] or [])


def test_hardening_holds_from_inside(small_pool: DockerSandbox) -> None:
    out = probe(small_pool, """
        import os
        status = dict(line.split(":", 1) for line in open("/proc/self/status"))
        print(os.getuid(), os.getgid(), os.getppid() <= 16,
              status["CapEff"].strip(), status["CapBnd"].strip(), status["NoNewPrivs"].strip())
    """)
    uid, gid, small_parent_pid, cap_eff, cap_bnd, no_new_privs = out.split()
    assert (uid, gid) == ("65534", "65534")
    assert small_parent_pid == "True"  # the runner sits in the container's own PID namespace
    assert int(cap_eff, 16) == 0 and int(cap_bnd, 16) == 0
    assert no_new_privs == "1"


def test_cannot_write_to_the_root_or_run_files_from_tmp(docker_sandbox: RunnerPool) -> None:
    out = probe(docker_sandbox, """
        import os, subprocess
        for path in ("/leti-escaped", "/etc/leti-escaped", "/opt/leti/runner/__init__.py",
                     "/usr/bin/python3"):
            try:
                open(path, "a").write("pwned")
                print("wrote", path)
            except OSError as exc:
                print("refused", path, exc.strerror)
        open("scratch.sh", "w").write("#!/bin/sh\\necho ran\\n")  # the job's own dir, on /tmp
        os.chmod("scratch.sh", 0o755)
        try:
            subprocess.run(["./scratch.sh"], check=True)
            print("executed")
        except OSError as exc:
            print("exec refused", exc.strerror)
    """)
    assert "wrote" not in out and "executed" not in out
    assert out.count("refused") == 5
    assert "Read-only file system" in out


def test_cannot_reach_the_network(docker_sandbox: RunnerPool) -> None:
    out = probe(docker_sandbox, """
        import os, socket
        print("interfaces", sorted(os.listdir("/sys/class/net")))
        for address in (("1.1.1.1", 53), ("8.8.8.8", 443), ("172.17.0.1", 2375)):
            try:
                socket.create_connection(address, timeout=1)
                print("connected", address)
            except OSError as exc:
                print("unreachable", type(exc).__name__)
        try:
            socket.getaddrinfo("deb.debian.org", 80)
            print("resolved")
        except OSError:
            print("no dns")
    """)
    assert "interfaces ['lo']" in out
    assert "connected" not in out and "resolved" not in out
    assert out.count("unreachable") == 3 and "no dns" in out


CASES = {
    "passed": ("def add(a, b):\n    return a + b\n", ("assert add(1, 2) == 3",
                                                    "assert add(0, 0) == 0")),
    "failed": ("def add(a, b):\n    return a - b\n", ("assert add(0, 0) == 0",
                                                    "assert add(1, 2) == 3")),
    "error": ("def add(a, b):\n    return undefined\n", ("assert add(1, 2) == 3",)),
    "syntax_error": ("def add(a, b)\n    return a + b\n", ("assert add(1, 2) == 3",)),
    "timeout": ("def add(a, b):\n    while True:\n        pass\n", ("assert add(1, 2) == 3",)),
    "memory": ("x = bytearray(1 << 40)\n", ("assert True",)),
    "crashed": ("import ctypes\nctypes.string_at(0)\n", ("assert True",)),
    "early_exit": ("import os\nos._exit(0)\n", ("assert True",)),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_same_outcomes_as_the_local_backend(docker_sandbox: RunnerPool, local_sandbox: RunnerPool,
                                            case: str) -> None:
    program, tests = CASES[case]
    job = Job(program, tests, timeout=1.0, memory_mb=256)
    docker, local = docker_sandbox.run(job), local_sandbox.run(job)
    expected_status = "crashed" if case == "early_exit" else case
    assert docker.status == local.status == expected_status
    fields = ("error_type", "failed_test", "failed_assertion", "expected", "actual",
              "tests_passed", "tests_total", "traceback")
    assert {f: getattr(docker, f) for f in fields} == {f: getattr(local, f) for f in fields}
    assert render_feedback(docker) == render_feedback(local)


def test_the_container_memory_limit_is_enforced(small_pool: DockerSandbox) -> None:
    # The job's own address-space limit (2 GiB) is above the container's 256 MiB: the kernel's
    # cgroup OOM killer is what stops it, and the runner survives to report it.
    program = "chunks = []\nfor _ in range(40):\n    chunks.append(bytearray(16 * 2**20))\n"
    outcome = small_pool.run(Job(program, ("assert True",), timeout=10, memory_mb=2048))
    assert outcome.status is Status.MEMORY and outcome.error_type == "Killed"
    assert small_pool.run(HONEST).status is Status.PASSED


def test_a_job_is_a_message_not_a_container_start() -> None:
    # A pool of its own: the shared session pool may be due to recycle a runner mid-test.
    with make_sandbox("docker", workers=2) as pool:
        assert isinstance(pool, DockerSandbox)
        pool.warm_up()
        before = container_ids(pool)
        jobs = [Job(f"def f(x):\n    return x * {i}\n", (f"assert f(2) == {2 * i}",), id=f"job-{i}")
                for i in range(60)]
        outcomes = asyncio.run(pool.run_many(jobs))
        assert [o.id for o in outcomes] == [j.id for j in jobs]
        assert all(o.status is Status.PASSED for o in outcomes)
        assert container_ids(pool) == before and len(before) == pool.workers


def test_large_jobs_and_replies_cross_the_stream(docker_sandbox: RunnerPool) -> None:
    blob = "x" * 200_000  # the program alone spans many writes; the reply many frames
    program = f"DATA = {blob!r}\nprint(DATA[:3000])\ndef f():\n    return len(DATA)\n"
    outcome = docker_sandbox.run(Job(program, ("assert f() == 200000", "assert f() == 1")))
    assert outcome.status is Status.FAILED and outcome.failed_test == 2
    assert outcome.actual == "200000" and outcome.stdout.strip() == "x" * 3000


def test_container_is_replaced_after_n_jobs(small_pool: DockerSandbox) -> None:
    small_pool.warm_up()
    first = container_ids(small_pool)
    for _ in range(2):
        assert small_pool.run(HONEST).status is Status.PASSED
        assert container_ids(small_pool) == first
    assert small_pool.run(HONEST).status is Status.PASSED  # the third job retires the container
    assert container_ids(small_pool) == set()
    assert small_pool.run(HONEST).status is Status.PASSED
    second = container_ids(small_pool)
    assert len(second) == 1 and second != first


def test_killing_its_parent_ends_the_job_but_not_the_container(small_pool: DockerSandbox) -> None:
    small_pool.warm_up()
    first = container_ids(small_pool)
    outcome = small_pool.run(Job("import os\nos.kill(os.getppid(), 9)\n", ("assert True",)))
    assert outcome.status is Status.CRASHED and outcome.error_type == "RunnerKilled"
    assert "killed the sandbox process that started it" in outcome.message
    assert small_pool.run(HONEST).status is Status.PASSED  # the runner forked a new zygote
    assert container_ids(small_pool) == first


def test_a_container_killed_from_outside_is_replaced(small_pool: DockerSandbox) -> None:
    small_pool.warm_up()
    (container,) = small_pool.containers()
    container.kill()
    assert small_pool.run(HONEST).status is Status.PASSED  # retried on a fresh container
    assert container.id not in container_ids(small_pool)


def test_closing_the_pool_removes_its_containers() -> None:
    pool = make_sandbox("docker", workers=2)
    assert isinstance(pool, DockerSandbox)
    pool.warm_up()
    assert len(container_ids(pool)) == 2
    pool.close()
    client = connect()
    assert client.containers.list(all=True, filters={"label": f"{POOL_LABEL}={pool.pool_id}"}) == []
    with pytest.raises(SandboxError, match="closed"):
        pool.run(HONEST)


def test_missing_image_says_how_to_build_it() -> None:
    hint = r"leti-sandbox:no-such-tag.*scripts/build-sandbox-image\.sh"
    with pytest.raises(SandboxError, match=hint):
        make_sandbox("docker", image="leti-sandbox:no-such-tag")


def test_an_image_built_from_another_runner_is_refused() -> None:
    client = connect()
    stale = "leti-sandbox:stale-runner-test"
    dockerfile = f"FROM {DEFAULT_IMAGE}\nLABEL {RUNNER_LABEL}=0123abcd\n".encode()
    client.images.build(fileobj=io.BytesIO(dockerfile), tag=stale, network_mode="none", rm=True)
    try:
        with pytest.raises(SandboxError, match=r"not built from this checkout's sandbox/runner package"
                                               r".*scripts/build-sandbox-image\.sh"):
            make_sandbox("docker", image=stale)
    finally:
        client.images.remove(stale, noprune=True)


def test_unreachable_engine_says_how_to_start_it(monkeypatch: pytest.MonkeyPatch,
                                                  tmp_path: Path) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-docker.sock")
    with pytest.raises(SandboxError, match=r"not reachable.*scripts/start-docker\.sh"):
        make_sandbox("docker")
