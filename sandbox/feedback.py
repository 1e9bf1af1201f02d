"""Render an outcome as the textual feedback that LETI trains on.

The format is what a programmer would see in a terminal, trimmed to what concerns the program
(docs/ARCHITECTURE.md, "Textual feedback", documents it with examples):

* passed:        ``All 3 tests passed.``
* failed:        ``Test 2 failed: assert add(1, 2) == 3``
                 ``Expected 3, got -1.``   (only for ``==`` assertions)
* error:         the trimmed traceback, ending in ``NameError: name 'c' is not defined``
* syntax_error:  the compiler's message with the offending line and caret
* timeout, memory, crashed: one sentence saying what happened (and which test was running)
* a note (e.g. lines the program forged into the harness's report channel) ends any of these

Line numbers always refer to the program as the model wrote it (frames are named ``<program>``;
test statements are ``<test N>``).
"""

from __future__ import annotations

from sandbox.types import Outcome, Status

MAX_FEEDBACK_CHARS = 2000


def render_feedback(outcome: Outcome, max_chars: int = MAX_FEEDBACK_CHARS) -> str:
    """The feedback text for one outcome, at most ``max_chars`` long (the end is kept)."""
    text = _render(outcome).strip()
    if len(text) > max_chars:
        text = "...\n" + text[-(max_chars - 4):]
    return text


def _render(o: Outcome) -> str:
    text = _render_status(o)
    if o.note and o.status not in (Status.PASSED, Status.FAILED):  # FAILED renders its own
        text += "\n" + _sentence(o.note)
    return text


def _sentence(note: str) -> str:
    return note[0].upper() + note[1:] + "."


def _render_status(o: Outcome) -> str:
    if o.status is Status.PASSED:
        return f"All {o.tests_total} tests passed." if o.tests_total != 1 else "The test passed."
    if o.status is Status.FAILED:
        lines = [f"Test {o.failed_test} failed: {o.failed_assertion or _last_line(o.traceback)}"]
        if o.expected is not None:
            lines.append(f"Expected {o.expected}, got {o.actual}.")
        if o.note:
            lines.append(_sentence(o.note))
        if o.traceback.count("File ") > 1:  # the assertion sits inside a helper (HumanEval check)
            lines.append(o.traceback)
        return "\n".join(lines)
    if o.status is Status.TIMEOUT:
        running = f" (test {o.failed_test} was running)" if o.failed_test else ""
        return f"Timeout: {o.message}{running}."
    if o.status in (Status.ERROR, Status.SYNTAX_ERROR) or (o.status is Status.MEMORY and o.traceback):
        return o.traceback or o.message
    return f"{o.error_type or o.status.value}: {o.message}."


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-2].strip() if len(lines) >= 2 else "assertion"
