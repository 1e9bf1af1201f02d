"""Get the program out of a completion: what the sandbox runs and the trainer learns from.

Instruct models answer in chat: a sentence, a fenced block, an explanation, sometimes a second
block with example usage. Base models prompted with an open fence write code and close it. So:
the first fenced Python block (preferring the first one that defines the wanted function), else
the code before a closing fence, else the code found among the prose; then trailing example
usage (``print(...)``, bare asserts, ``if __name__ == "__main__":``) after the last definition
is dropped, because it is not part of the answer and may fail or block under the tests.
When nothing parses, the best guess is returned as is: its syntax error is feedback too.
"""

from __future__ import annotations

import ast
import re

_FENCE = re.compile(r"^[ \t]*```[ \t]*([\w+#.-]*)[^\n]*\n(.*?)(?:^[ \t]*```|\Z)", re.S | re.M)
_PY_LANGS = {"", "python", "py", "python3", "py3"}
_CODE_START = re.compile(r"^(def |async def |class |import |from \S+ import |@)", re.M)


def extract_program(completion: str, entry_point: str | None = None) -> str:
    """The program in ``completion`` (see the module docstring); '' only for an empty answer."""
    text = completion.replace("\r\n", "\n")
    blocks = [body for lang, body in _FENCE.findall(text) if lang.lower() in _PY_LANGS]
    if "```" in text and _CODE_START.match(text.lstrip()):
        code = text.split("```", 1)[0]  # the prompt opened the fence: code up to the closing one
    elif blocks:
        defining = [b for b in blocks if entry_point and _defines(b, entry_point)]
        code = (defining or [b for b in blocks if b.strip()] or blocks)[0]
    else:
        code = _code_among_prose(text)
    return _drop_example_usage(code.strip("\n")).rstrip() + "\n" if code.strip() else ""


def _defines(code: str, name: str) -> bool:
    return re.search(rf"^\s*(async\s+)?def\s+{re.escape(name)}\s*\(", code, re.M) is not None


def _code_among_prose(text: str) -> str:
    """From the first line that starts code to the longest run of lines that still parses."""
    start = _CODE_START.search(text)
    if start is None:
        return text
    lines = text[start.start():].split("\n")
    for end in range(len(lines), 0, -1):
        candidate = "\n".join(lines[:end])
        if _parses(candidate):
            return candidate
    return "\n".join(lines)


def _parses(code: str) -> bool:
    try:
        ast.parse(code)
    except (SyntaxError, ValueError):
        return False
    return True


def _is_example_usage(node: ast.stmt) -> bool:
    if isinstance(node, ast.Assert):
        return True
    if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
        func = node.value.func
        return isinstance(func, ast.Name) and func.id in {"print", "input", "exit", "quit"}
    if isinstance(node, ast.If):  # if __name__ == "__main__":
        test = node.test
        return (isinstance(test, ast.Compare) and isinstance(test.left, ast.Name)
                and test.left.id == "__name__")
    return False


def _drop_example_usage(code: str) -> str:
    """Cut the trailing run of statements after the last def/class that only exercise it."""
    try:
        body = ast.parse(code).body
    except (SyntaxError, ValueError):
        return code
    defs = [i for i, node in enumerate(body)
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]
    if not defs:
        return code
    first_dropped = len(body)
    while first_dropped - 1 > defs[-1] and _is_example_usage(body[first_dropped - 1]):
        first_dropped -= 1
    if first_dropped == len(body):
        return code
    return "\n".join(code.split("\n")[:body[first_dropped].lineno - 1]).rstrip()
