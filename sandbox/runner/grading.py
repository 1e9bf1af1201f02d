"""The runner's verdict on one job, decided from evidence the program cannot forge, and the
outcome object it answers with."""

from __future__ import annotations

import json
import re
import signal
import time

from .names import test_file
from .plain import Opaque, from_plain, short_repr
from .plans import VALUE


class Grading:
    """The runner's side of one job: decides each test from evidence the program cannot forge.

    A VALUE test passes when the value the program's process sent for it equals the expected
    value, compared here (the expected value never left this process). A JUDGED test passes
    when the judge reports it. Tests are decided in order as the evidence arrives, so the
    runner stops a job as soon as its verdict is known. Lines the program's process wrote that
    the harness would not have (a forged "passed", out-of-order values) are counted, ignored,
    and named in the feedback."""

    def __init__(self, job: dict) -> None:
        self.job, self.plans = job, job["plans"]
        self.next = 0  # index into plans of the first test not yet decided
        self.program, self.judge = bytearray(), bytearray()
        self.values: list = []  # (index, raw JSON) from the program's process, in order
        self.passes: list[int] = []  # tests the judge reported passed, in order
        self.program_final: dict | None = None
        self.judge_final: dict | None = None
        self.failure: dict | None = None
        self.forged = 0
        self.used_values = self.used_passes = 0

    @property
    def decided(self) -> bool:
        """Whether the verdict is known (a job without tests is known when its process ends)."""
        return self.failure is not None or 0 < len(self.plans) == self.next

    def feed_program(self, chunk: bytes) -> None:
        self.program += chunk
        for line in self._lines(self.program):
            if line.startswith(b"V "):
                index, _, raw = line[2:].partition(b" ")
                self.values.append((int(index) if index.isdigit() else -1, raw))
            elif self.program_final is None and (final := _json_object(line)) is not None \
                    and final.get("status") in ("error", "memory"):
                self.program_final = final
            else:
                self.forged += 1
        self._advance()
        if self.failure is None and self.program.startswith(b"V ") and \
                self.next < len(self.plans) and self.plans[self.next][0] == VALUE and \
                len(self.program) > self.plans[self.next][5]:  # a value past its bound, unfinished
            self.failure = _compare(self.plans[self.next], self.next + 1, bytes(self.program))

    def feed_judge(self, chunk: bytes) -> None:
        self.judge += chunk
        for line in self._lines(self.judge):
            if line.startswith(b'{"event": "test_passed"'):
                self.passes.append((_json_object(line) or {}).get("index", -1))
            elif self.judge_final is None:
                self.judge_final = _json_object(line)
        self._advance()

    @staticmethod
    def _lines(buffer: bytearray) -> list[bytes]:
        end = buffer.rfind(b"\n")
        if end < 0:
            return []
        lines = bytes(buffer[:end]).split(b"\n")
        del buffer[:end + 1]
        return lines

    def _advance(self) -> None:
        while self.failure is None and self.next < len(self.plans):
            plan, index = self.plans[self.next], self.next + 1
            if plan[0] == VALUE:
                if self.used_values == len(self.values):
                    return
                got, raw = self.values[self.used_values]
                self.used_values += 1
                self.failure = (_forged(f"it sent a value for test {got} where test {index} "
                                        "was due", index) if got != index
                                else _compare(plan, index, raw))
            else:
                if self.used_passes == len(self.passes):
                    return
                got = self.passes[self.used_passes]
                self.used_passes += 1
                if got != index:
                    self.failure = _forged("the judge's report is out of order", index)
            if self.failure is None:
                self.next += 1

    def result(self, exit_status: int | None, timed_out: bool) -> dict:
        """The status fields of the outcome, once the job's processes are gone."""
        passed = {"tests_passed": self.next}
        if self.failure is None and self.next == len(self.plans) and (
                self.plans or (exit_status == 0 and self.program_final is None and not timed_out)):
            return {"status": "passed", **passed}
        if self.failure is not None:
            status = self.failure
        elif timed_out:
            status = {"status": "timeout", "error_type": "Timeout", "failed_test": self.next + 1,
                      "message": f"the program did not finish within {self.job['timeout']:g} s"}
        elif self.judge_final is not None and self.judge_final.get("failed_test") == self.next + 1 \
                and self.judge_final.get("error_type") != "ProgramGone":
            status = self.judge_final
        elif self.program_final is not None:
            status = dict(self.program_final)
            status["traceback"] = _with_test_lines(str(status.get("traceback", "")),
                                                   self.job["tests"])
        else:
            status = _ended(exit_status)
        status = {**status, **passed}
        if self.forged:
            note = (f"the program wrote {self.forged} line(s) of its own into the harness's "
                    "report channel; they were ignored (a test passes only on a value the "
                    "sandbox compared itself)")
            status["note"] = f"{status['note']}; {note}" if status.get("note") else note
        return status


def _with_test_lines(trace: str, tests: list[str]) -> str:
    """The program process's traceback with the test statements' lines put back (that process
    never had their source: it holds the expected values)."""
    lines, out = trace.splitlines(True), []
    for position, line in enumerate(lines):
        out.append(line)
        match = _TEST_FRAME.match(line)
        following = lines[position + 1] if position + 1 < len(lines) else ""
        if match and not following.startswith("    "):
            index, number = int(match.group(1)), int(match.group(2))
            source = tests[index - 1].splitlines() if 0 < index <= len(tests) else []
            if 0 < number <= len(source):
                out.append(f"    {source[number - 1].strip()}\n")
    return "".join(out)


_TEST_FRAME = re.compile(r'  File "<test (\d+)>", line (\d+), in ')


def _json_object(line: bytes) -> dict | None:
    try:
        value = json.loads(line)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def _compare(plan: tuple, index: int, raw: bytes) -> dict | None:
    """Test ``index``'s verdict from the value the program sent: None when it holds."""
    _, _, expected, statement, _, bound, expected_json = plan
    if raw == expected_json:
        return None
    if len(raw) > bound:
        actual = f"<a value of {len(raw)} bytes, far larger than the expected value>"
        return _failed(index, statement, expected, actual, None)
    try:
        value = from_plain(json.loads(raw))
        if value == expected:
            return None
    except (ValueError, RecursionError, TypeError, MemoryError) as exc:
        return _forged(f"its value for test {index} was not plain data ({exc})", index)
    note = None
    if isinstance(value, Opaque):
        note = (f"the program returned an object of type {value.type_name}, and only plain "
                "data (numbers, strings, bytes, None, lists, tuples, sets, dicts) is compared, "
                "outside the program's process")
    return _failed(index, statement, expected, short_repr(value), note)


def _failed(index: int, statement: str, expected: object, actual: str, note: str | None) -> dict:
    line = statement.strip().splitlines()[0] if statement.strip() else "assert"
    return {"status": "failed", "error_type": "AssertionError", "message": "AssertionError",
            "phase": "test", "failed_test": index, "failed_assertion": statement,
            "expected": short_repr(expected), "actual": actual, "note": note,
            "traceback": (f'Traceback (most recent call last):\n  File "{test_file(index)}", '
                          f"line 1, in <module>\n    {line}\nAssertionError\n")}


def _forged(what: str, index: int) -> dict:
    return {"status": "crashed", "error_type": "ForgedReport", "phase": "test",
            "failed_test": index,
            "message": f"the program's process broke the harness's protocol: {what}"}


def _ended(exit_status: int | None) -> dict:
    """How the program's process ended on its own, before the tests were decided."""
    sig = -exit_status if exit_status is not None and exit_status < 0 else None
    if sig == signal.SIGXCPU:
        return {"status": "timeout", "error_type": "Timeout",
                "message": "the program used up its CPU time limit"}
    if sig == signal.SIGKILL:
        return {"status": "memory", "error_type": "Killed",
                "message": "the process was killed (SIGKILL), most likely for using too much memory"}
    if sig is not None:
        name = signal.Signals(sig).name
        return {"status": "crashed", "error_type": name,
                "message": f"the process crashed with signal {name}"}
    return {"status": "crashed", "error_type": "EarlyExit",
            "message": f"the process exited with code {exit_status} before the tests finished "
                       "(the program ended the interpreter, e.g. with os._exit)"}


class Tail:
    """Keeps the last ``cap`` bytes of a stream and counts the rest."""

    def __init__(self, cap: int) -> None:
        self.cap, self.data, self.total = cap, bytearray(), 0

    def feed(self, chunk: bytes) -> None:
        self.total += len(chunk)
        self.data += chunk
        if len(self.data) > 2 * self.cap:
            del self.data[: -self.cap]

    def text(self) -> str:
        data = bytes(self.data[-self.cap:])
        prefix = f"[{self.total - len(data)} earlier bytes dropped]\n" if self.total > len(data) else ""
        return prefix + data.decode("utf-8", "replace")


def make_outcome(job: dict, status: dict, stdout: Tail, stderr: Tail,
                 start: float) -> dict:
    """The outcome object: the status fields, the streams' tails and the duration."""
    outcome = {
        "id": job.get("id"),
        "error_type": None, "message": "", "phase": None, "failed_test": None,
        "failed_assertion": None, "expected": None, "actual": None, "note": None,
        "traceback": "", "tests_total": len(job["tests"]), "tests_passed": 0,
    }
    outcome.update({k: v for k, v in status.items() if k in outcome or k == "status"})
    if outcome["status"] == "passed":
        outcome["tests_passed"] = len(job["tests"])
    outcome.update({
        "id": job.get("id"),
        "stdout": stdout.text(),
        "stderr": stderr.text(),
        "duration_ms": round((time.monotonic() - start) * 1000, 3),
    })
    return outcome
