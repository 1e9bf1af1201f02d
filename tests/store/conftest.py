"""A real PostgreSQL server for the tests marked ``postgres``: ``LETI_TEST_POSTGRES_URL`` when
set, else a private throw-away cluster started from the Debian ``postgresql`` package's binaries
(``apt-get install postgresql``); the tests are skipped when neither is available."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "postgres: needs a PostgreSQL server (see "
                                       "tests/store/conftest.py)")


def _pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


def _as_postgres(command: list[str]) -> list[str]:
    """initdb refuses to run as root: run the cluster as the package's ``postgres`` user."""
    if os.geteuid() == 0 and shutil.which("runuser"):
        return ["runuser", "-u", "postgres", "--", *command]
    return command


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    if os.environ.get("LETI_TEST_POSTGRES_URL"):
        yield os.environ["LETI_TEST_POSTGRES_URL"]
        return
    bin_dir = _pg_bin()
    if bin_dir is None:
        message = "no PostgreSQL: apt-get install postgresql, or set LETI_TEST_POSTGRES_URL"
        if os.environ.get("CI"):  # scripts/install.sh installs it: in CI its absence is a failure
            pytest.fail(message)
        pytest.skip(message)
    from tests.api.conftest import free_port

    root = Path(tempfile.mkdtemp(prefix="leti-pg-"))  # pytest's own are private to root
    data = root / "data"
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
    port = free_port()
    subprocess.run(_as_postgres([str(bin_dir / "initdb"), "-D", str(data), "-A", "trust",
                                 "-U", "postgres", "--no-sync"]),
                   check=True, capture_output=True)
    options = f"-k {root} -p {port} -c listen_addresses='' -c fsync=on"
    subprocess.run(_as_postgres([str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options,
                                 "-l", str(root / "log"), "-w", "start"]),
                   check=True, capture_output=True)
    try:
        subprocess.run(_as_postgres([str(bin_dir / "createdb"), "-h", str(root), "-p",
                                     str(port), "-U", "postgres", "leti"]),
                       check=True, capture_output=True)
        yield f"postgresql+psycopg://postgres@/leti?host={root}&port={port}"
    finally:
        subprocess.run(_as_postgres([str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast",
                                     "-w", "stop"]), capture_output=True)
        shutil.rmtree(root, ignore_errors=True)
