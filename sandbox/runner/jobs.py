"""A job line made into a job: parsed, validated, its tests planned and its program compiled;
and what each of its processes is sent (the program's process never sees an expected value)."""

from __future__ import annotations

import json
import marshal
from types import CodeType

from .grading import Tail, make_outcome
from .names import test_file
from .plans import JUDGED, VALUE, compile_program, compile_setup, instrument, plan_test


def prepare_job(line: bytes, start: float) -> tuple[dict | None, dict | None]:
    """The validated job with its program compiled, or the answer that ends it early."""
    try:
        parsed = json.loads(line)
    except (ValueError, RecursionError) as exc:  # RecursionError: absurdly nested JSON
        return None, {"id": None, "invalid_job": f"invalid JSON: {exc}"}
    try:
        job = validate_job(parsed)
    except ValueError as exc:
        return None, {"id": parsed.get("id") if isinstance(parsed, dict) else None,
                      "invalid_job": str(exc)}
    code, not_compiling = compile_program(job["program"])
    if not_compiling is not None:
        return None, make_outcome(job, not_compiling, Tail(0), Tail(0), start)
    job["code"] = code
    return job, None


def validate_job(job: object) -> dict:
    """Check a job's shape and that its tests compile. Raises ValueError with what to fix."""
    if not isinstance(job, dict):
        raise ValueError("a job must be a JSON object")
    program, tests = job.get("program"), job.get("tests")
    if not isinstance(program, str):
        raise ValueError("'program' must be a string")
    if not isinstance(tests, list) or not all(isinstance(t, str) for t in tests):
        raise ValueError("'tests' must be a list of strings (Python statements)")
    setup = job.get("setup") or ""
    if not isinstance(setup, str):
        raise ValueError("'setup' must be a string")
    timeout = job.get("timeout", 5.0)
    memory_mb = job.get("memory_mb", 1024)
    if not isinstance(timeout, (int, float)) or not 0 < timeout <= 300:
        raise ValueError("'timeout' must be a number of seconds in (0, 300]")
    if not isinstance(memory_mb, int) or not 32 <= memory_mb <= 65536:
        raise ValueError("'memory_mb' must be an integer in [32, 65536]")
    plans = []
    for i, src in enumerate(tests, start=1):
        try:
            plans.append(plan_test(src, i))
        except (SyntaxError, ValueError) as exc:
            raise ValueError(f"test {i} is not valid Python: {getattr(exc, 'msg', exc)} "
                             f"(line {getattr(exc, 'lineno', '?')})") from None
    if any(plan[4] for plan in plans):
        # A test that defines names (HumanEval's `def check`) runs in the judge, and so must
        # every test that might use them: all of this job's tests are JUDGED.
        plans = [(JUDGED, instrument(src, test_file(i)), None, plan[3], plan[4], 0, b"")
                 for i, (src, plan) in enumerate(zip(tests, plans), start=1)]
    try:
        compiled_setup = compile_setup(setup)
    except SyntaxError as exc:
        raise ValueError(f"'setup' is not valid Python: {exc.msg} (line {exc.lineno})") from None
    # Compiled here (cached per source); the job's processes get the code objects marshalled.
    return {"id": job.get("id"), "program": program, "tests": tests, "setup": setup,
            "timeout": float(timeout), "memory_mb": memory_mb,
            "plans": plans, "compiled_setup": compiled_setup}


def child_payload(job: dict, code: CodeType | None, workdir: str) -> bytes:
    """What the program's process reads from its job pipe: the program compiled, and for each
    test only what that process may see (a VALUE test's call; nothing of a JUDGED test)."""
    return marshal.dumps({
        "program": job["program"], "code": code, "setup": job["setup"],
        "compiled_setup": job["compiled_setup"],
        "plans": [plan[1] if plan[0] == VALUE else None for plan in job["plans"]],
        "timeout": job["timeout"], "memory_mb": job["memory_mb"], "workdir": workdir,
    })


def judge_payload(job: dict, workdir: str) -> bytes:
    """What the judge reads: the JUDGED tests, code and source."""
    return marshal.dumps({
        "judged": [(i, plan[1], src) for i, (plan, src) in
                   enumerate(zip(job["plans"], job["tests"]), start=1) if plan[0] == JUDGED],
        "timeout": job["timeout"], "memory_mb": job["memory_mb"], "workdir": workdir,
    })
