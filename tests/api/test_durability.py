"""A 2xx means committed: kill `leti serve` with SIGKILL in the middle of a stream of writes,
start it again on the same data directory, and find every acknowledged row."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.api.conftest import free_port

pytestmark = pytest.mark.slow
WRITERS = 4
KILL_AFTER = 120  # acknowledged writes before the kill


@contextmanager
def serve(data_dir: Path, mbpp_path: Path) -> Iterator[tuple[subprocess.Popen, str]]:
    """`leti serve` as its own process, like production; yields it once /healthz answers."""
    port = free_port()
    env = {**os.environ, "LETI_DATA_DIR": str(data_dir), "LETI_MBPP_PATH": str(mbpp_path),
           "LETI_GENERATOR_BACKEND": "none", "LETI_LOAD_HUMANEVAL": "false",
           "LETI_SANDBOX_WORKERS": "2", "LETI_API_KEY": "", "LETI_DATABASE_URL": ""}
    env = {k: v for k, v in env.items() if v != ""}
    command = [sys.executable, "-c", "from service.cli import app; app()", "serve",
               "--port", str(port), "--log-level", "warning"]  # what `leti serve` runs
    proc = subprocess.Popen(command, env=env, start_new_session=True,
                            cwd=data_dir)  # no developer's .env applies
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, "leti serve exited during start-up"
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "leti serve did not start"
            time.sleep(0.1)
        yield proc, url
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(60)


def test_every_acknowledged_write_survives_sigkill(tmp_path: Path, mbpp_path: Path) -> None:
    acknowledged_feedback: list[tuple[str, str]] = []  # (sample id, feedback id)
    acknowledged_samples: list[tuple[str, str]] = []  # (sample id, execution id)
    lock = threading.Lock()
    stop = threading.Event()

    with serve(tmp_path, mbpp_path) as (proc, url):
        seed = httpx.post(f"{url}/v1/evaluate", json={
            "programs": ["def f(): return 1"], "tests": ["assert f() == 1"],
            "instruction": "Return 1."}, timeout=60).json()["results"][0]["sample_id"]

        def write(worker: int) -> None:
            with httpx.Client(base_url=url, timeout=30) as client:
                for n in range(10_000):
                    if stop.is_set():
                        return
                    try:
                        if n % 4 == 0:  # an evaluation: a sample, an execution, a triple
                            r = client.post("/v1/evaluate", json={
                                "programs": [f"def f(): return {worker * 10_000 + n}"],
                                "tests": ["assert f() >= 0"], "instruction": "Return 1."})
                            if r.status_code == 200:
                                res = r.json()["results"][0]
                                with lock:
                                    acknowledged_samples.append((res["sample_id"],
                                                                 res["execution_id"]))
                        else:
                            r = client.post("/v1/feedback", json={
                                "sample_id": seed, "score": {"value": n % 11, "max": 10},
                                "text": f"writer {worker} note {n}"})
                            if r.status_code == 201:
                                with lock:
                                    acknowledged_feedback.append((seed, r.json()["feedback_id"]))
                    except httpx.TransportError:
                        return  # the server is gone

        writers = [threading.Thread(target=write, args=(i,)) for i in range(WRITERS)]
        for thread in writers:
            thread.start()
        while len(acknowledged_feedback) + len(acknowledged_samples) < KILL_AFTER:
            assert any(t.is_alive() for t in writers), "the writers stopped before the kill"
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)  # mid-stream: requests are in flight right now
        proc.wait(30)
        stop.set()
        for thread in writers:
            thread.join(60)
        with contextlib.suppress(ProcessLookupError):  # whatever the server left behind
            os.killpg(proc.pid, signal.SIGKILL)

    assert len(acknowledged_feedback) + len(acknowledged_samples) >= KILL_AFTER
    with serve(tmp_path, mbpp_path) as (_, url), httpx.Client(base_url=url, timeout=60) as c:
        stored = c.get(f"/v1/samples/{seed}").json()
        feedback_ids = {f["id"] for f in stored["feedback"]}
        missing = [fid for _, fid in acknowledged_feedback if fid not in feedback_ids]
        assert not missing, f"{len(missing)} acknowledged feedback rows were lost"
        for sample_id, execution_id in acknowledged_samples:
            sample = c.get(f"/v1/samples/{sample_id}")
            assert sample.status_code == 200, f"acknowledged sample {sample_id} was lost"
            assert [e["id"] for e in sample.json()["executions"]] == [execution_id]
        triples = c.get("/v1/triples", params={"sample_id": seed, "source": "external",
                                               "limit": 1000}).json()["items"]
        assert len(triples) == len(feedback_ids)  # each labelled feedback kept its triple
        assert c.get("/readyz").status_code == 200
