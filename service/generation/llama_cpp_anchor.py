"""The llama.cpp anchor of ``leti bench generate``: what a user would run instead of our embedded
backend, on the same GGUF file, measured in the same run.

Two measurements: ``run_server_anchor`` sends the loop's own workload (chat-templated prompts,
``n`` seeded samples each) to ``llama-server`` with parallel slots and continuous batching;
``run_batched_bench`` runs ``llama-batched-bench`` (synthetic prompts, pure decode speed). The
binaries come from ``scripts/build-llama-cpp.sh``; when absent, ``unavailable()`` says so and
nothing here raises until a run is asked for. Stdlib + httpx only: no torch.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from service.generation.llama_server import LlamaCppError, post, start_server

DIR_ENV = "LETI_LLAMA_CPP_DIR"
DEFAULT_DIR = Path(__file__).resolve().parents[2] / ".cache" / "llama.cpp"
SERVER, BATCHED_BENCH = "llama-server", "llama-batched-bench"
BUILD_HINT = "run scripts/build-llama-cpp.sh"


def llama_cpp_dir() -> Path:
    return Path(os.environ.get(DIR_ENV) or DEFAULT_DIR)


def find_binary(name: str) -> Path | None:
    """``<dir>/bin/<name>`` (the build script's layout) or ``<dir>/<name>``; None when absent."""
    root = llama_cpp_dir()
    for path in (root / "bin" / name, root / name):
        if path.is_file() and os.access(path, os.X_OK):
            return path
    return None


def unavailable(*names: str) -> str | None:
    """None when the binaries are built, else the message a benchmark prints as its skip."""
    if missing := [n for n in (names or (SERVER, BATCHED_BENCH)) if find_binary(n) is None]:
        return f"llama.cpp anchor not built ({', '.join(missing)} not in {llama_cpp_dir()}): {BUILD_HINT}"
    return None


def _binary(name: str) -> Path:
    if (path := find_binary(name)) is None:
        raise LlamaCppError(unavailable(name))
    return path


def _default_model() -> Path:
    """The GGUF file the embedded backend loads (dequantised there, Q4_1 here)."""
    from trainer.base_model import default_gguf_path  # importlib only: no torch

    return default_gguf_path()


def llama_cpp_version(binary: Path) -> str | None:
    """``0.5.0-dev (commit 0c1e57098)`` from ``--version``: results name what they measured."""
    try:
        out = subprocess.run([str(binary), "--version"], capture_output=True, text=True,
                             timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.search(r"version: (\S+) \(build \d+, commit (\w+)\)", out.stdout + out.stderr)
    return f"{m[1]} (commit {m[2]})" if m else None


def _positive(**values: int) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


@dataclass(frozen=True)
class ServerAnchorResult:
    """One pass of the workload through ``llama-server``; tokens are the server's own counts."""

    prompts: int
    n: int
    tokens: int  # generated tokens (tokens_predicted), the stop/EOS token included, as ours
    prompt_tokens: int  # prompt tokens of every sample (tokens_evaluated)
    prompt_tokens_computed: int  # those actually prefilled (cached or shared ones excluded)
    seconds: float  # wall time of the whole workload, first request to last answer
    slots: int
    threads: int
    share_prompt: bool
    stopped_by_length: int  # samples that reached max_new_tokens
    version: str | None
    repack: bool = True  # llama.cpp's weight repacking (its default) was on

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds


def run_server_anchor(prompts: Sequence[str], *, n: int = 4, max_new_tokens: int = 256,
                      stop: Sequence[str] = (), temperature: float = 0.8, top_p: float = 0.95,
                      seed: int = 0, slots: int = 32, threads: int = 2,
                      share_prompt: bool = False, ctx_per_slot: int | None = None,
                      model: str | Path | None = None, startup_timeout_s: float = 120.0,
                      request_timeout_s: float = 900.0, repack: bool | None = None
                      ) -> ServerAnchorResult:
    """Sample every prompt ``n`` times through ``llama-server``'s raw ``/completion``.

    Prompts go as they are (the chat template is already in them). Sample ``j`` of prompt ``i``
    is seeded ``seed + i*n + j``. At most ``slots`` sequences run at once: one request per
    sample, or with ``share_prompt`` one request per prompt with ``n_cmpl = n`` (llama.cpp
    prefills the prompt once and copies it to the other slots; its seeds are the same). Only
    temperature and top-p shape the distribution (top-k and min-p off), as in our sampler.
    ``ctx_per_slot`` defaults to a bound that cannot overflow: the longest prompt's UTF-8 bytes
    (a byte-level BPE token is at least one byte) plus ``max_new_tokens``. ``repack``: llama.cpp's
    weight repacking; None is its default (on) and, when the server dies of a signal while it
    loads the model, once more with it off (its AMX repacking crashed on an Intel VM with AMX,
    2026-12-04), which the result records."""
    _check_workload(prompts, n=n, max_new_tokens=max_new_tokens, stop=stop,
                    temperature=temperature, top_p=top_p, slots=slots, threads=threads,
                    share_prompt=share_prompt)
    if ctx_per_slot is None:
        ctx_per_slot = -(-(max(len(p.encode()) for p in prompts) + max_new_tokens + 8) // 256) * 256
    _positive(ctx_per_slot=ctx_per_slot)
    binary, model = _binary(SERVER), model or _default_model()
    version = llama_cpp_version(binary)
    command = [str(binary), "-m", str(model), "--host", "127.0.0.1", "-t", str(threads),
               "-tb", str(threads), "-np", str(slots), "-cb", "-c", str(slots * ctx_per_slot),
               "--no-webui"]
    log = Path(tempfile.mkstemp(prefix="llama-server-", suffix=".log")[1])
    per_request = n if share_prompt else 1
    try:
        server = start_server(command, log, slots=slots, repack=repack,
                              startup_timeout_s=startup_timeout_s,
                              request_timeout_s=request_timeout_s)
    except BaseException:
        log.unlink(missing_ok=True)
        raise
    pool = ThreadPoolExecutor(max_workers=max(1, slots // per_request))
    body = {"n_predict": max_new_tokens, "temperature": temperature, "top_p": top_p,
            "top_k": 0, "min_p": 0.0, "stop": list(stop), "cache_prompt": True, "stream": False}
    try:
        groups, seconds = _sample(server.client, pool, prompts, body, n, per_request, seed)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
        server.close()
        log.unlink(missing_ok=True)
    return _result(groups, seconds, len(prompts), n, slots=slots, threads=threads,
                   share_prompt=share_prompt, version=version, repack=server.repack)


def _check_workload(prompts: Sequence[str], *, n: int, max_new_tokens: int,
                    stop: Sequence[str], temperature: float, top_p: float, slots: int,
                    threads: int, share_prompt: bool) -> None:
    """Refuse bad arguments before anything is started or looked up."""
    if isinstance(prompts, str) or not prompts or not all(isinstance(p, str) and p for p in prompts):
        raise ValueError("prompts must be a non-empty list of non-empty strings")
    _positive(n=n, max_new_tokens=max_new_tokens, slots=slots, threads=threads)
    if not 0 <= temperature or not 0 < top_p <= 1:
        raise ValueError("temperature must be >= 0 and top_p in (0, 1]")
    if isinstance(stop, str) or not all(isinstance(s, str) and s for s in stop):
        raise ValueError("stop must be a sequence of non-empty strings")
    if share_prompt and n > slots:
        raise ValueError(f"share_prompt needs n ({n}) <= slots ({slots}): one prompt's samples run together")


def _sample(client: httpx.Client, pool: ThreadPoolExecutor, prompts: Sequence[str],
            body: dict[str, Any], n: int, per_request: int,
            seed: int) -> tuple[list[list[dict[str, Any]]], float]:
    """Every sample's answer, grouped by request, and the seconds from the first request to
    the last answer (after one short warm-up request, not timed)."""
    # /completion adds BOS when the vocabulary says so; ours would not: send token ids then.
    def tokens(text: str, special: bool) -> list[int]:
        request = {"content": text, "add_special": special, "parse_special": True}
        return list(post(client, "/tokenize", request)["tokens"])
    inputs: list[Any] = list(prompts)
    if len(tokens(prompts[0], True)) != len(tokens(prompts[0], False)):
        inputs = [tokens(p, False) for p in prompts]
    post(client, "/completion", {**body, "prompt": inputs[0], "n_predict": 4, "seed": seed})
    bodies = [{**body, "prompt": p, "seed": seed + i * n + j, "n_cmpl": per_request}
              for i, p in enumerate(inputs) for j in range(0, n, per_request)]
    started = time.perf_counter()
    futures = [pool.submit(post, client, "/completion", b) for b in bodies]
    groups = [r if isinstance(r := f.result(), list) else [r] for f in futures]  # n_cmpl > 1: a list
    return groups, time.perf_counter() - started


def _result(groups: list[list[dict[str, Any]]], seconds: float, prompts: int, n: int, *,
            slots: int, threads: int, share_prompt: bool, version: str | None,
            repack: bool) -> ServerAnchorResult:
    """The server's own counts summed, once every sample came back whole."""
    answers = [a for group in groups for a in group]
    if len(answers) != prompts * n or any(a.get("truncated") for a in answers):
        raise LlamaCppError(f"expected {prompts * n} untruncated completions, got "
                            f"{len(answers)} ({sum(bool(a.get('truncated')) for a in answers)} truncated)")
    return ServerAnchorResult(
        prompts=prompts, n=n, tokens=sum(int(a["tokens_predicted"]) for a in answers),
        prompt_tokens=sum(int(a["tokens_evaluated"]) for a in answers),
        # a shared prompt's copies carry its parent's timings: count each request once
        prompt_tokens_computed=sum(int(g[0].get("timings", {}).get("prompt_n", 0)) for g in groups),
        seconds=seconds, slots=slots, threads=threads, share_prompt=share_prompt,
        stopped_by_length=sum(1 for a in answers if a.get("stop_type") == "limit"),
        version=version, repack=repack)


@dataclass(frozen=True)
class BatchedBenchRow:
    """One ``llama-batched-bench`` line: ``pl`` sequences, each ``pp`` prompt + ``tg`` new tokens."""

    pp: int
    tg: int
    pl: int  # B: sequences decoded together
    n_kv: int
    prompt_s: float
    prompt_tokens_per_s: float
    decode_s: float
    decode_tokens_per_s: float  # summed over the pl sequences
    total_s: float
    tokens_per_s: float  # prompt and new tokens over the whole time


@dataclass(frozen=True)
class BatchedBench:
    rows: tuple[BatchedBenchRow, ...]
    threads: int
    version: str | None


_MD_ROW = re.compile(r"^\|\s*(\d+)\s*\|\s*(\d+)\s*\|\s*(\d+)\s*\|\s*(\d+)\s*\|"
                     + r"\s*([\d.]+)\s*\|" * 6 + r"\s*$")


def parse_batched_bench(text: str) -> list[BatchedBenchRow]:
    """Rows from either output format (``--output-format jsonl`` or the markdown table)."""
    rows = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{") and '"speed_tg"' in line:
            d = json.loads(line)
            rows.append(BatchedBenchRow(int(d["pp"]), int(d["tg"]), int(d["pl"]), int(d["n_kv"]),
                                        float(d["t_pp"]), float(d["speed_pp"]), float(d["t_tg"]),
                                        float(d["speed_tg"]), float(d["t"]), float(d["speed"])))
        elif m := _MD_ROW.match(line):
            ints, floats = [int(x) for x in m.groups()[:4]], [float(x) for x in m.groups()[4:]]
            rows.append(BatchedBenchRow(*ints, *floats))  # type: ignore[arg-type]
    return rows


def run_batched_bench(npp: Sequence[int] = (160,), ntg: Sequence[int] = (128,),
                      npl: Sequence[int] = (1, 8, 32, 64), *, threads: int = 2,
                      model: str | Path | None = None, timeout_s: float = 1800.0) -> BatchedBench:
    """``llama-batched-bench`` over every (pp, tg, pl), with a context large enough for the
    largest (the tool silently skips combinations that do not fit, so a missing row raises)."""
    for name, values in (("npp", npp), ("ntg", ntg), ("npl", npl)):
        if isinstance(values, (str, int)) or not values:
            raise ValueError(f"{name} must be a non-empty list of positive integers")
        _positive(**{f"{name}[{i}]": v for i, v in enumerate(values)})
    _positive(threads=threads)
    binary, model = _binary(BATCHED_BENCH), model or _default_model()
    ctx = max(npl) * (max(npp) + max(ntg))
    cmd = [str(binary), "-m", str(model), "-t", str(threads), "-tb", str(threads),
           "-c", str(ctx), "-npp", ",".join(map(str, npp)), "-ntg", ",".join(map(str, ntg)),
           "-npl", ",".join(map(str, npl)), "--output-format", "jsonl"]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        raise LlamaCppError(f"llama-batched-bench ran past {timeout_s:.0f} s") from None
    rows = parse_batched_bench(out.stdout + "\n" + out.stderr)
    if out.returncode != 0 or len(rows) != len(npp) * len(ntg) * len(npl):
        tail = "\n".join((out.stdout + out.stderr).splitlines()[-15:])
        raise LlamaCppError(f"llama-batched-bench failed ({out.returncode}, {len(rows)} rows):\n{tail}")
    return BatchedBench(tuple(rows), threads, llama_cpp_version(binary))
