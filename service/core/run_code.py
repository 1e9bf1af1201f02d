"""Run a whole Python script in the sandbox, as ``python main.py < stdin`` would, with files.

The sandbox runs a program and then test statements (``sandbox.Job``); a script is a program
with no tests, wrapped so that it behaves as a script: the files are written into the job's
scratch directory first (which is also the working directory and the start of ``sys.path``),
``sys.stdin`` reads the given text, the code runs as module ``__main__``, an uncaught exception
prints Python's own traceback on stderr and exits 1, and ``sys.exit(n)`` exits ``n``. The wrapper
runs inside the sandbox with the script (nothing of it is trusted), so the isolation and limits
are the sandbox's own (docs/SANDBOX.md). Nothing is stored: this is a tool call, not feedback.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from enum import StrEnum

from sandbox import Job, JobError, Outcome, Status
from sandbox.types import MAX_PROGRAM_BYTES
from service.core.config import Settings
from service.core.errors import InvalidRequest, LimitExceeded
from service.core.evaluation import SandboxExecutor

SCRIPT_NAME = "main.py"
_WRAPPER = '''\
def __run_script(code, stdin, files):
    import base64, io, linecache, os, sys, traceback, types
    for name, data in files:
        if os.path.dirname(name):
            os.makedirs(os.path.dirname(name), exist_ok=True)
        with open(name, "wb") as handle:
            handle.write(base64.b64decode(data))
    path = os.path.join(os.getcwd(), {script!r})
    linecache.cache[path] = (len(code), None, code.splitlines(True), path)
    sys.stdin = io.TextIOWrapper(io.BytesIO(stdin.encode()), encoding="utf-8")
    sys.argv, sys.path[:0] = [path], [os.getcwd()]
    main = types.ModuleType("__main__")
    main.__file__, main.__builtins__ = path, __builtins__
    sys.modules["__main__"] = main
    status = 0
    try:
        compiled = compile(code, path, "exec", dont_inherit=True)
    except (SyntaxError, ValueError) as exc:
        traceback.print_exception(type(exc), exc, None)
        status = 1
    else:
        try:
            exec(compiled, main.__dict__)
        except SystemExit as exc:
            if exc.code is None:
                status = 0
            elif isinstance(exc.code, int):
                status = exc.code & 0xFF
            else:
                print(exc.code, file=sys.stderr)
                status = 1
        except BaseException as exc:
            traceback.print_exception(type(exc), exc, exc.__traceback__.tb_next)
            status = 1
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    if status:
        raise SystemExit(status)


__run_script({code!r}, {stdin!r}, {files!r})
'''
_EXIT = re.compile(r"SystemExit: (\d+)")
_EARLY_EXIT = re.compile(r"exited with code (-?\d+)")


class RunState(StrEnum):
    FINISHED = "finished"  # the script ended on its own (any return code)
    TIME_LIMIT = "time_limit"  # killed at the time limit


@dataclass(frozen=True)
class Script:
    code: str
    stdin: str = ""
    files: tuple[tuple[str, str], ...] = ()  # (relative path, base64 content)
    timeout_s: float | None = None  # None or above the server's limit: the server's limit
    memory_mb: int | None = None  # None: the server's limit; above it: the server's limit


@dataclass(frozen=True)
class ScriptResult:
    state: RunState
    return_code: int | None  # None when killed at the time limit
    stdout: str
    stderr: str
    seconds: float


def check_path(name: str) -> str:
    """A file the script may be given: a relative path that stays in its working directory."""
    parts = name.replace("\\", "/").split("/")
    if not name or name.startswith("/") or any(p in ("", ".", "..") for p in parts) \
            or "\x00" in name:
        raise InvalidRequest(f"file path {name[:100]!r} must be relative, without '.', '..' or "
                             "empty parts")
    return "/".join(parts)


def check_content(name: str, data: str) -> str:
    try:
        base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequest(f"file {name[:100]!r} is not valid base64") from None
    return data


def script_job(script: Script, settings: Settings) -> Job:
    """The sandbox job that runs ``script`` (limits clamped to the server's)."""
    if len(script.code.encode("utf-8", "replace")) > settings.max_program_bytes:
        raise LimitExceeded(f"the code is over {settings.max_program_bytes} bytes (the server's "
                            "LETI_MAX_PROGRAM_BYTES)")
    files = tuple((check_path(n), check_content(n, d)) for n, d in script.files)
    program = _WRAPPER.format(script=SCRIPT_NAME, code=script.code, stdin=script.stdin,
                              files=files)
    if len(program.encode("utf-8", "replace")) > MAX_PROGRAM_BYTES:
        raise LimitExceeded(f"code, stdin and files together are over the sandbox's "
                            f"{MAX_PROGRAM_BYTES // 1024} KiB")
    limit = settings.sandbox_timeout_s
    timeout = limit if script.timeout_s is None else min(script.timeout_s, limit)
    memory = settings.sandbox_memory_mb
    if script.memory_mb is not None:
        if script.memory_mb < 32:
            raise InvalidRequest("memory_limit_MB must be at least 32 (or -1 for the server's "
                                 "limit)")
        memory = min(script.memory_mb, memory)
    try:
        return Job(program=program, tests=(), timeout=timeout, memory_mb=memory)
    except JobError as exc:
        raise InvalidRequest(str(exc)) from exc


def script_result(outcome: Outcome) -> ScriptResult:
    """How the wrapped script ended, from the sandbox's outcome of its job."""
    seconds = round(outcome.duration_ms / 1000, 6)
    stdout, stderr = outcome.stdout, outcome.stderr
    if outcome.status is Status.TIMEOUT:
        return ScriptResult(RunState.TIME_LIMIT, None, stdout, stderr, seconds)
    if outcome.status is Status.PASSED:
        return ScriptResult(RunState.FINISHED, 0, stdout, stderr, seconds)
    code = 1
    if outcome.error_type == "SystemExit" and (m := _EXIT.search(outcome.message)) or outcome.error_type == "EarlyExit" and (m := _EARLY_EXIT.search(outcome.message)):
        code = int(m.group(1))
    elif outcome.error_type == "Killed" or (outcome.status is Status.CRASHED
                                             and (outcome.error_type or "").startswith("SIG")):
        code = -_signal_number(outcome.error_type or "SIGKILL")
    else:  # the wrapper itself failed (e.g. out of memory before the script started)
        stderr = stderr + (outcome.traceback or outcome.message)
    return ScriptResult(RunState.FINISHED, code, stdout, stderr, seconds)


def _signal_number(name: str) -> int:
    import signal

    try:
        return int(signal.Signals["SIGKILL" if name == "Killed" else name])
    except KeyError:
        return int(signal.SIGKILL)


async def run_script(sandbox: SandboxExecutor, settings: Settings, script: Script) -> ScriptResult:
    """Run it; a fault of the sandbox itself is ``Unavailable`` (never a script's outcome)."""
    job = script_job(script, settings)
    outcome = await sandbox.run(job)
    return script_result(outcome)

