"""REST API load: many concurrent ``POST /v1/evaluate`` against a real ``leti serve`` on 127.0.0.1.

The server runs as its own process (SQLite store in a scratch directory, the local sandbox, no
model); clients keep ``concurrency`` requests in flight until ``requests`` have been answered,
each one MBPP reference solution to run; then the same programs again as batches (``batch``
programs of one task per request, the shape the loop and ``leti evaluate`` send). The anchor, in
the same run, is the same programs through the sandbox pool called directly with as many
workers, through the same pipelined ``run_many`` that the service's batches go through: the
difference is what the API costs (HTTP, validation, the store's durable commits).
"""

from __future__ import annotations

import asyncio
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from sandbox.tasks import Task

SANDBOX_ANCHOR = "sandbox pool, called directly"
# A few MBPP references run for seconds (mbpp/123 sums amicable numbers below 10,000); with 64
# requests sharing two cores they must not time out, in either harness.
TIMEOUT_S = 30.0


@dataclass(frozen=True)
class LoadResult:
    name: str
    requests: int
    errors: int  # requests answered with anything but 200 and a passing program
    seconds: float
    p50_ms: float
    p99_ms: float
    executions: int = 0  # programs run (a batch request runs several; /healthz runs none)

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds

    @property
    def executions_per_second(self) -> float:
        return self.executions / self.seconds

    def as_dict(self) -> dict[str, float | int | str]:
        return {**asdict(self), "per_second": round(self.per_second, 1),
                "executions_per_second": round(self.executions_per_second, 1)}


def summarise(name: str, latencies_s: list[float], errors: int, seconds: float,
              executions: int = 0) -> LoadResult:
    """Throughput and latency percentiles of one harness."""
    ms = sorted(x * 1000 for x in latencies_s) or [0.0]
    p99 = ms[min(len(ms) - 1, int(round(0.99 * (len(ms) - 1))))]
    return LoadResult(name, len(latencies_s), errors, seconds, statistics.median(ms), p99,
                      executions)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def running_server(mbpp_path: Path, workers: int) -> Iterator[str]:
    """``leti serve`` in a scratch data directory; yields its URL once it answers /readyz."""
    import httpx

    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="leti-bench-") as data_dir:
        env = {**os.environ, "LETI_DATA_DIR": data_dir, "LETI_MBPP_PATH": str(mbpp_path),
               "LETI_GENERATOR_BACKEND": "none", "LETI_LOAD_HUMANEVAL": "false",
               "LETI_SANDBOX_WORKERS": str(workers), "LETI_SANDBOX_TIMEOUT_S": str(TIMEOUT_S)}
        for name in ("LETI_API_KEY", "LETI_DATABASE_URL"):
            env.pop(name, None)
        proc = subprocess.Popen([sys.executable, "-c", "from service.cli import app; app()",
                                 "serve", "--port", str(port), "--log-level", "warning"],
                                env=env, start_new_session=True,
                                cwd=data_dir)  # no .env of the caller's applies
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 120
            while True:
                if proc.poll() is not None:
                    raise RuntimeError("leti serve exited during start-up")
                try:
                    if httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("leti serve did not become ready in 120 s")
                time.sleep(0.2)
            yield url
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(60)


async def _load(url: str, bodies: list[dict | None], concurrency: int,
                ) -> tuple[list[float], list[str], float]:
    """POST each body to /v1/evaluate (a None body: GET /healthz), ``concurrency`` at a time."""
    import httpx

    latencies: list[float] = []
    errors: list[str] = []
    queue: asyncio.Queue[dict | None] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async def client(http: httpx.AsyncClient) -> None:
        while not queue.empty():
            body = queue.get_nowait()
            start = time.perf_counter()
            try:
                if body is None:
                    response = await http.get("/healthz")
                    if response.status_code != 200:
                        errors.append(f"/healthz: HTTP {response.status_code}")
                    latencies.append(time.perf_counter() - start)
                    continue
                response = await http.post("/v1/evaluate", json=body)
                if response.status_code != 200:
                    errors.append(f"{body['task_id']}: HTTP {response.status_code} "
                                  f"{response.text[:300]}")
                else:
                    for result in response.json()["results"]:
                        if not result["passed"]:
                            errors.append(f"{body['task_id']}: {result['status']}: "
                                          f"{result['feedback'][:300]}")
            except httpx.HTTPError as exc:
                what = "/healthz" if body is None else body["task_id"]
                errors.append(f"{what}: {type(exc).__name__}: {exc}")
            latencies.append(time.perf_counter() - start)

    async with httpx.AsyncClient(base_url=url, timeout=300, limits=limits) as http:
        start = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(concurrency)))
        return latencies, errors, time.perf_counter() - start


def batch_programs(tasks: list[Task], requests: int, batch: int) -> list[Task]:
    """The tasks of the batch harness, in order: each of ``requests // batch`` tasks ``batch``
    times (a request carries one task's programs)."""
    return [t for t in tasks[:max(1, requests // batch)] for _ in range(batch)]


def bench_api(tasks: list[Task], mbpp_path: Path, requests: int, concurrency: int,
              workers: int, batch: int = 32,
              ) -> tuple[LoadResult, LoadResult, LoadResult, list[str]]:
    """``requests`` evaluate calls (one reference program each), ``concurrency`` at a time; the
    same number of programs as requests of ``batch`` programs each (``batch_programs``); and
    as many ``GET /healthz`` from the same client: the HTTP ceiling of this machine (client and
    server share its cores). Returns the three figures and a description of each failure."""
    bodies: list[dict | None] = [{"task_id": t.task_id, "programs": [t.reference or ""]}
                                 for t in (tasks[i % len(tasks)] for i in range(requests))]
    batched = batch_programs(tasks, requests, batch)
    batch_bodies: list[dict | None] = [
        {"task_id": batched[i].task_id, "programs": [t.reference or "" for t in batched[i:i + batch]]}
        for i in range(0, len(batched), batch)]
    with running_server(mbpp_path, workers) as url:
        asyncio.run(_load(url, bodies[:concurrency], concurrency))  # warm-up, not timed
        latencies, errors, seconds = asyncio.run(_load(url, bodies, concurrency))
        in_batches = asyncio.run(_load(url, batch_bodies, min(concurrency, len(batch_bodies))))
        ceiling = asyncio.run(_load(url, [None] * requests, concurrency))
    evaluate = summarise(f"POST /v1/evaluate, 1 program, {concurrency} concurrent", latencies,
                         len(errors), seconds, requests)
    batches = summarise(f"POST /v1/evaluate, {batch} programs, "
                        f"{min(concurrency, len(batch_bodies))} concurrent", in_batches[0],
                        len(in_batches[1]), in_batches[2], len(batched))
    healthz = summarise(f"GET /healthz, {concurrency} concurrent", ceiling[0], len(ceiling[1]),
                        ceiling[2])
    return evaluate, batches, healthz, errors + in_batches[1] + ceiling[1]


def bench_sandbox_direct(tasks: list[Task], workers: int) -> LoadResult:
    """The anchor: the same programs through a warm pool of the same size, no API, in one
    ``run_many`` batch (the path ``leti bench sandbox`` measures and the service uses)."""
    from sandbox import make_sandbox

    jobs = [t.job_for(t.reference or "", timeout=TIMEOUT_S) for t in tasks]
    latencies: list[float] = []
    with make_sandbox("local", workers=workers) as pool:
        pool.warm_up()
        start = time.perf_counter()
        outcomes = asyncio.run(pool.run_many(jobs, round_trips=latencies))
        seconds = time.perf_counter() - start
    return summarise(SANDBOX_ANCHOR, latencies, sum(not o.passed for o in outcomes), seconds,
                     len(jobs))
