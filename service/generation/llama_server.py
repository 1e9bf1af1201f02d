"""One ``llama-server`` process for the llama.cpp anchor: started on a free port, waited for until
it has loaded the model (failing fast when it exits), stopped, and JSON posted to it. Stdlib +
httpx only: no torch."""

from __future__ import annotations

import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx


class LlamaCppError(RuntimeError):
    """llama.cpp is not built, did not start, or answered badly; the message says which."""


class DiedOfSignal(LlamaCppError):
    """The server was killed by a signal (a crash) while it started."""


@dataclass
class LlamaServer:
    """A started, ready server: its process, a client for it, and whether weights are repacked."""

    proc: subprocess.Popen[bytes]
    client: httpx.Client
    repack: bool

    def close(self) -> None:
        stop(self.proc)
        self.client.close()


def start_server(command: list[str], log: Path, *, slots: int, repack: bool | None,
                 startup_timeout_s: float, request_timeout_s: float) -> LlamaServer:
    """``command`` (without ``--port``) started and ready, its output in ``log``. ``repack``:
    llama.cpp's weight repacking; None is its default (on) and, when the server dies of a
    signal while it loads the model, once more with it off."""
    repacked = repack is not False
    try:
        return _start(command, log, slots, repacked, startup_timeout_s, request_timeout_s)
    except DiedOfSignal:
        if repack is not None:
            raise
        # llama.cpp's default crashed here: once more without repacking
        return _start(command, log, slots, False, startup_timeout_s, request_timeout_s)


def _start(command: list[str], log: Path, slots: int, repack: bool, startup_timeout_s: float,
           request_timeout_s: float) -> LlamaServer:
    port = free_port()
    cmd = [*command, "--port", str(port), *([] if repack else ["--no-repack"])]
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT)
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", trust_env=False,
                          timeout=httpx.Timeout(request_timeout_s, connect=10.0),
                          limits=httpx.Limits(max_connections=slots + 4))
    try:
        wait_ready(proc, client, log, startup_timeout_s)
    except BaseException:
        stop(proc)
        client.close()
        raise
    return LlamaServer(proc, client, repack)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(proc: subprocess.Popen[bytes], client: httpx.Client, log: Path,
               timeout_s: float) -> None:
    """Until ``/health`` answers 200 (the model is loaded); bounded, and fails fast on exit."""
    deadline, tail = time.monotonic() + timeout_s, lambda: log.read_text(errors="replace")[-2000:]
    while proc.poll() is None:
        try:
            if client.get("/health", timeout=2.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise LlamaCppError(f"llama-server not ready in {timeout_s:.0f} s:\n{tail()}")
        time.sleep(0.1)
    error = DiedOfSignal if proc.returncode < 0 else LlamaCppError
    raise error(f"llama-server exited ({proc.returncode}):\n{tail()}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def post(client: httpx.Client, route: str, body: dict[str, Any]) -> Any:
    response = client.post(route, json=body)
    if response.status_code != 200:
        raise LlamaCppError(f"llama-server {route}: {response.status_code} {response.text[:300]}")
    return response.json()
