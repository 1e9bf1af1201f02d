"""The llama.cpp anchor (service/generation/llama_cpp_anchor.py): parsing llama-batched-bench's
real output (captured from our own build, tests/generation/data/), the not-built path, argument
checks, the server protocol against a small fake llama-server, and one real end-to-end run when
scripts/build-llama-cpp.sh has built the binaries."""

from __future__ import annotations

import json
import os
import sys
import textwrap
from pathlib import Path

import pytest

from service.generation import llama_cpp_anchor as anchor

DATA = Path(__file__).parent / "data"
PROMPT = ("<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
          "Face<|im_end|>\n<|im_start|>user\nWrite a function to add two numbers.<|im_end|>\n"
          "<|im_start|>assistant\n")


@pytest.fixture
def empty_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(anchor.DIR_ENV, str(tmp_path))
    return tmp_path


# -- parsing real output ------------------------------------------------------------------------

def test_parses_captured_jsonl_output() -> None:
    rows = anchor.parse_batched_bench((DATA / "llama_batched_bench_jsonl.txt").read_text())
    assert [(r.pp, r.tg, r.pl) for r in rows] == [(32, 8, 1), (32, 8, 2)]
    first = rows[0]
    assert first.n_kv == 40 and first.pl == 1
    # the tool's own figures: speed = tokens / time, for each phase
    for r in rows:
        assert r.prompt_tokens_per_s == pytest.approx(r.pl * r.pp / r.prompt_s, rel=1e-3)
        assert r.decode_tokens_per_s == pytest.approx(r.pl * r.tg / r.decode_s, rel=1e-3)
        assert r.tokens_per_s == pytest.approx(r.pl * (r.pp + r.tg) / r.total_s, rel=1e-3)
        assert r.total_s == pytest.approx(r.prompt_s + r.decode_s, abs=2e-3)


def test_parses_captured_markdown_output() -> None:
    text = (DATA / "llama_batched_bench_md.txt").read_text()
    rows = anchor.parse_batched_bench(text)
    assert [(r.pp, r.tg, r.pl, r.n_kv) for r in rows] == [(32, 8, 1, 40), (32, 8, 2, 80)]
    line = next(x for x in text.splitlines() if x.startswith("|    32 |      8 |    2 |"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert rows[1].prompt_s == float(cells[4]) and rows[1].decode_tokens_per_s == float(cells[7])
    assert rows[1].tokens_per_s == float(cells[9])


def test_parser_ignores_everything_but_result_rows() -> None:
    text = ("main: n_kv_max = 128, n_batch = 2048\n|    PP |     TG |    B |\n|-------|\n"
            '{"n_kv_max": 128, "pp": 1}\nllama_perf_context_print: load time = 1 ms\n')
    assert anchor.parse_batched_bench(text) == []


# -- not built ----------------------------------------------------------------------------------

def test_not_built_gives_a_clear_message(empty_dir: Path) -> None:
    assert anchor.find_binary(anchor.SERVER) is None
    message = anchor.unavailable()
    assert message is not None
    assert "scripts/build-llama-cpp.sh" in message and str(empty_dir) in message
    assert anchor.SERVER in message and anchor.BATCHED_BENCH in message
    with pytest.raises(anchor.LlamaCppError, match="build-llama-cpp.sh"):
        anchor.run_server_anchor([PROMPT], n=1)
    with pytest.raises(anchor.LlamaCppError, match="build-llama-cpp.sh"):
        anchor.run_batched_bench()


def test_finds_executables_only(empty_dir: Path) -> None:
    (empty_dir / "bin").mkdir()
    plain = empty_dir / "bin" / anchor.BATCHED_BENCH
    plain.write_text("not executable")
    assert anchor.find_binary(anchor.BATCHED_BENCH) is None
    plain.chmod(0o755)
    assert anchor.find_binary(anchor.BATCHED_BENCH) == plain
    assert anchor.unavailable(anchor.BATCHED_BENCH) is None
    assert anchor.unavailable() is not None  # the server is still missing


# -- argument checks (before anything is started or looked up) ----------------------------------

@pytest.mark.parametrize("kwargs", [
    {"prompts": []}, {"prompts": PROMPT}, {"prompts": [PROMPT, ""]}, {"n": 0}, {"slots": 0},
    {"threads": 0}, {"max_new_tokens": 0}, {"top_p": 0.0}, {"top_p": 1.5}, {"temperature": -1},
    {"stop": "```"}, {"stop": ("",)}, {"share_prompt": True, "n": 8, "slots": 4},
    {"ctx_per_slot": 0}, {"n": True},
])
def test_server_anchor_rejects_bad_arguments(empty_dir: Path, kwargs: dict) -> None:
    args = {"prompts": [PROMPT], **kwargs}
    with pytest.raises(ValueError):
        anchor.run_server_anchor(args.pop("prompts"), **args)


@pytest.mark.parametrize("kwargs", [
    {"npl": []}, {"npl": [1, 0]}, {"npp": 160}, {"ntg": "128"}, {"threads": 0},
])
def test_batched_bench_rejects_bad_arguments(empty_dir: Path, kwargs: dict) -> None:
    with pytest.raises(ValueError):
        anchor.run_batched_bench(**kwargs)


# -- the server protocol, against a fake llama-server -------------------------------------------

FAKE_SERVER = '''
import json, os, sys, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
args = sys.argv[1:]
if args == ["--version"]:
    print("version: 9.9.9-fake (build 7, commit abc1234)"); sys.exit(0)
opt = lambda flag: args[args.index(flag) + 1]
record = open(os.environ["FAKE_RECORD"], "a")
record.write(json.dumps({"argv": args, "pid": os.getpid()}) + "\\n"); record.flush()
lock, state = threading.Lock(), {"in_flight": 0, "max": 0, "started": time.monotonic()}
ADD_BOS = os.environ.get("FAKE_ADD_BOS") == "1"

def tokenize(content, special):
    ids = content if isinstance(content, list) else [ord(c) for c in content]
    return ([1] if special and ADD_BOS and not isinstance(content, list) else []) + ids

class Handler(BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def send(self, code, body):
        data = json.dumps(body).encode()
        self.send_response(code); self.send_header("Content-Length", str(len(data)))
        self.end_headers(); self.wfile.write(data)
    def do_GET(self):
        ready = time.monotonic() - state["started"] > 0.3  # "loading" at first, as the real one
        self.send(200 if ready else 503, {"status": "ok" if ready else "loading"})
    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.path == "/tokenize":
            return self.send(200, {"tokens": tokenize(body["content"], body["add_special"])})
        with lock:
            state["in_flight"] += body.get("n_cmpl", 1)
            state["max"] = max(state["max"], state["in_flight"])
        time.sleep(0.05)
        n_cmpl, prompt = body.get("n_cmpl", 1), tokenize(body["prompt"], True)
        out = [{"content": "x", "tokens_predicted": min(body["n_predict"], 3 + (body["seed"] + k) % 5),
                "tokens_evaluated": len(prompt), "timings": {"prompt_n": len(prompt)},  # children copy the parent's stats
                "stop_type": "eos", "truncated": False} for k in range(n_cmpl)]
        with lock:
            state["in_flight"] -= n_cmpl
        record.write(json.dumps({"body": body, "max_in_flight": state["max"]}) + "\\n"); record.flush()
        self.send(200, out[0] if n_cmpl == 1 else out)

ThreadingHTTPServer((opt("--host"), int(opt("--port"))), Handler).serve_forever()
'''


@pytest.fixture
def fake_server(empty_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (empty_dir / "bin").mkdir()
    script = empty_dir / "bin" / anchor.SERVER
    script.write_text(f"#!{sys.executable}\n" + textwrap.dedent(FAKE_SERVER))
    script.chmod(0o755)
    record = empty_dir / "record.jsonl"
    monkeypatch.setenv("FAKE_RECORD", str(record))
    return record


def _records(path: Path) -> tuple[list[str], int, list[dict]]:
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    start = next(x for x in lines if "argv" in x)
    return start["argv"], start["pid"], [x for x in lines if "body" in x]


def _expected_tokens(seed: int, n_predict: int) -> int:
    return min(n_predict, 3 + seed % 5)


def test_server_anchor_protocol(fake_server: Path) -> None:
    prompts = ["abc", "defgh", "ij"]
    result = anchor.run_server_anchor(prompts, n=3, max_new_tokens=6, stop=["\n```"], seed=10,
                                      slots=4, threads=1, model="/m.gguf")
    argv, pid, requests = _records(fake_server)
    assert argv[argv.index("--host") + 1] == "127.0.0.1"
    assert (argv[argv.index("-t") + 1], argv[argv.index("-np") + 1]) == ("1", "4")
    assert "-cb" in argv and argv[argv.index("-m") + 1] == "/m.gguf"
    assert int(argv[argv.index("-c") + 1]) >= 4 * (5 + 6)  # every slot holds prompt + new tokens
    warmup, timed = requests[0], requests[1:]
    assert warmup["body"]["n_predict"] == 4
    assert len(timed) == 9
    assert sorted(r["body"]["seed"] for r in timed) == list(range(10, 19))
    for r in timed:
        b = r["body"]
        i = (b["seed"] - 10) // 3
        assert b["prompt"] == prompts[i]  # as-is: this vocabulary adds no BOS
        assert (b["temperature"], b["top_p"], b["top_k"], b["min_p"]) == (0.8, 0.95, 0, 0.0)
        assert b["stop"] == ["\n```"] and b["cache_prompt"] is True and b["n_cmpl"] == 1
    assert max(r["max_in_flight"] for r in requests) <= 4
    assert result.tokens == sum(_expected_tokens(s, 6) for s in range(10, 19))
    assert result.prompt_tokens == 3 * (3 + 5 + 2) == result.prompt_tokens_computed
    assert (result.prompts, result.n, result.slots, result.threads) == (3, 3, 4, 1)
    assert result.version == "9.9.9-fake (commit abc1234)"
    assert result.tokens_per_s == pytest.approx(result.tokens / result.seconds)
    with pytest.raises(ProcessLookupError):  # the server was stopped
        os.kill(pid, 0)


def test_server_anchor_shared_prompt_and_bos(fake_server: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_ADD_BOS", "1")
    result = anchor.run_server_anchor(["abc", "de"], n=2, max_new_tokens=50, seed=0, slots=4,
                                      share_prompt=True, model="/m.gguf")
    _, _, requests = _records(fake_server)
    timed = sorted((r["body"] for r in requests[1:]), key=lambda b: b["seed"])  # as they finish
    # one request per prompt, n completions each; token ids (no BOS) since this one adds one
    assert [(b["prompt"], b["seed"], b["n_cmpl"]) for b in timed] == [
        ([97, 98, 99], 0, 2), ([100, 101], 2, 2)]
    assert result.tokens == sum(_expected_tokens(s, 50) for s in range(4))
    assert result.prompt_tokens == 2 * 3 + 2 * 2 and result.prompt_tokens_computed == 3 + 2
    assert result.share_prompt


def test_server_that_dies_is_reported(empty_dir: Path) -> None:
    (empty_dir / "bin").mkdir()
    script = empty_dir / "bin" / anchor.SERVER
    script.write_text("#!/bin/sh\n[ \"$1\" = --version ] && exit 0\necho 'error: no model' >&2\nexit 3\n")
    script.chmod(0o755)
    with pytest.raises(anchor.LlamaCppError, match="exited \\(3\\)[\\s\\S]*no model"):
        anchor.run_server_anchor([PROMPT], n=1, model="/nope.gguf", startup_timeout_s=10)


def test_a_server_that_crashes_while_loading_is_run_again_without_repacking(
        fake_server: Path) -> None:
    """llama.cpp's weight repacking crashed (SIGSEGV) on an Intel VM with AMX: a server killed
    by a signal while it loads is started once more with --no-repack, and the result says so;
    asked for explicitly, repacking is not dropped."""
    script = fake_server.parent / "bin" / anchor.SERVER
    script.write_text(script.read_text().replace(
        "record = open(", 'import signal\nif "--no-repack" not in args: os.kill(os.getpid(), '
        'signal.SIGSEGV)\nrecord = open(', 1))
    result = anchor.run_server_anchor([PROMPT], n=2, max_new_tokens=4, slots=2)
    argv, _, bodies = _records(fake_server)
    assert result.repack is False and "--no-repack" in argv and len(bodies) == 2 + 1  # + warm-up
    with pytest.raises(anchor.LlamaCppError, match="exited \\(-11\\)"):
        anchor.run_server_anchor([PROMPT], n=1, repack=True)


# -- the real thing, where it is built ----------------------------------------------------------

@pytest.mark.slow
@pytest.mark.model
def test_real_llama_server_on_the_default_gguf(smol_tokenizer: object) -> None:
    message = anchor.unavailable(anchor.SERVER)
    if message is not None:
        pytest.skip(message)
    from trainer.prompts import TaskPrompt, build_prompt

    tasks = [TaskPrompt("mbpp", "Write a function to add two numbers.", ("assert add(1, 2) == 3",)),
             TaskPrompt("mbpp", "Write a function to reverse a string.",
                        ("assert rev('ab') == 'ba'",))]
    prompts = [build_prompt(t, tokenizer=smol_tokenizer) for t in tasks]
    result = anchor.run_server_anchor(prompts, n=2, max_new_tokens=8, stop=["\n```"], slots=2,
                                      threads=2)
    ids = [smol_tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]  # type: ignore[operator]
    assert result.prompt_tokens == 2 * sum(len(x) for x in ids)  # same tokens as ours, no BOS
    assert 4 <= result.tokens <= 4 * 8
    assert result.seconds > 0 and result.version and "commit" in result.version
