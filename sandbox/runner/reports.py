"""The reports a job's processes write when a program, setup or test raises.

A report's traceback keeps only the frames of the program and the tests (LETI's trimmed stack
trace): the harness's own frames are no business of the feedback.
"""

from __future__ import annotations

import traceback

REPORT_CAP = 4 * 2**20  # bytes of a report (the program's values, the judge's) we accept
TEST_PASSED = b'{"event": "test_passed", "index": %d}'  # the judge's report line, JSON


def error_report(exc: BaseException, phase: str, index: int, keep: tuple[str, ...],
                 detail: dict | None = None) -> dict:
    """The report of a test, setup or program that raised ``exc``."""
    message = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    if isinstance(exc, SystemExit):
        message += f" (the program exited during its {phase} phase, before the tests finished)"
    detail = detail or {}
    status = "memory" if isinstance(exc, MemoryError) else "failed" if detail.get("failed") else "error"
    return {
        "status": status, "error_type": type(exc).__name__, "message": message, "phase": phase,
        "failed_test": index if phase == "test" else None,
        "failed_assertion": detail.get("source"), "expected": detail.get("expected"),
        "actual": detail.get("actual"), "note": detail.get("note"),
        "traceback": _trimmed_traceback(exc, keep),
    }


def _trimmed_traceback(exc: BaseException, keep: tuple[str, ...]) -> str:
    """The traceback limited to frames of the program and tests (LETI's trimmed stack trace).

    Deep recursion can leave millions of frames: only the outermost 10 and innermost 40 are
    rendered, so the cost and the length of the feedback stay bounded.
    """
    tbs, tb = [], exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename in keep:
            tbs.append(tb)
        tb = tb.tb_next
    def render(part: list) -> list[str]:
        return traceback.format_list(traceback.StackSummary.extract(
            ((t.tb_frame, t.tb_lineno) for t in part), lookup_lines=True))

    if len(tbs) > 60:
        frames = render(tbs[:10]) + [f"  [... {len(tbs) - 50} more frames ...]\n"] + render(tbs[-40:])
    else:
        frames = render(tbs)
    lines = ["Traceback (most recent call last):\n"] if frames else []
    lines += frames
    lines += traceback.format_exception_only(type(exc), exc)
    return "".join(lines)
