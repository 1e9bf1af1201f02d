"""The names a job's code runs under: the files its tracebacks show, the program's module."""

from __future__ import annotations

PROGRAM_FILE = "<program>"
SETUP_FILE = "<setup>"
PROGRAM_MODULE = "__program__"


def test_file(index: int) -> str:
    """The file name test ``index`` (from 1) is compiled under: tracebacks name it."""
    return f"<test {index}>"
