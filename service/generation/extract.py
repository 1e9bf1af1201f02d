"""Get the program out of a completion: what the sandbox runs and the trainer learns from.

Instruct models answer in chat: a sentence, a fenced block, an explanation, sometimes a second
block with example usage. Base models prompted with an open fence write code and close it. So:
the first fenced Python block (preferring the first one that defines the wanted function), else
the code before a closing fence, else the code found among the prose. Then a broken or cut-off
tail after complete definitions is dropped, and so is trailing example usage after the last
definition (prints, asserts, bare calls, test data, ``if __name__ == "__main__":``): it is not
part of the answer and may fail or block under the tests. A model that restates a function it
has already written is looping: the program ends before the restatement. When nothing parses,
the best guess is returned as is: its syntax error is feedback too.
"""

from __future__ import annotations

import ast
import re

_FENCE = re.compile(r"^[ \t]*```[ \t]*([\w+#.-]*)[^\n]*\n(.*?)(?:^[ \t]*```|\Z)", re.DOTALL | re.MULTILINE)
_PY_LANGS = {"", "python", "py", "python3", "py3"}
_CODE_START = re.compile(r"^(def |async def |class |import |from \S+ import |@)", re.MULTILINE)


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
    if not code.strip():
        return ""
    code = _cut_at_redefinition(_complete_definitions(code.strip("\n")))
    lines = _drop_example_usage(code).split("\n")
    while len(lines) > 1 and (not lines[-1].strip() or lines[-1].lstrip().startswith("#")):
        lines.pop()  # comments that introduced a dropped part, or trail the program
    return "\n".join(lines).rstrip() + "\n"


def _defines(code: str, name: str) -> bool:
    return re.search(rf"^\s*(async\s+)?def\s+{re.escape(name)}\s*\(", code, re.MULTILINE) is not None


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


def _globals_read_by_definitions(body: list[ast.stmt]) -> set[str]:
    """Names the defs and classes read but do not bind themselves: module-level constants."""
    free: set[str] = set()
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            nodes = list(ast.walk(node))
            bound = {a.arg for a in nodes if isinstance(a, ast.arg)}
            bound |= {n.id for n in nodes if isinstance(n, ast.Name)
                      and isinstance(n.ctx, (ast.Store, ast.Del))}
            free |= {n.id for n in nodes if isinstance(n, ast.Name)
                     and isinstance(n.ctx, ast.Load)} - bound
    return free


def _is_example_usage(node: ast.stmt, used: set[str]) -> bool:
    """Top-level code after the definitions that only exercises them: prints, asserts, bare
    calls and comparisons, loops, ``if __name__ == "__main__":``, and test data (assignments to
    names no function reads as a global; a constant a function reads is kept)."""
    if isinstance(node, (ast.Assert, ast.Expr, ast.For, ast.While)):
        return True
    if isinstance(node, ast.If):
        test = node.test
        return (isinstance(test, ast.Compare) and isinstance(test.left, ast.Name)
                and test.left.id == "__name__")
    if isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        names = {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
        return not names & used
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
    used = _globals_read_by_definitions(body)
    first_dropped = len(body)
    while first_dropped - 1 > defs[-1] and _is_example_usage(body[first_dropped - 1], used):
        first_dropped -= 1
    if first_dropped == len(body):
        return code
    return "\n".join(code.split("\n")[:body[first_dropped].lineno - 1])


def _cut_at_redefinition(code: str) -> str:
    """End the program where the model starts writing a top-level function or class it has
    already written. Small models loop, restating the answer with small changes; Python would
    run the last restatement, which is usually the most degenerate one, and a trainer would
    learn the loop. What comes before the repeat is the answer (a prefix, never rewritten)."""
    try:
        body = ast.parse(code).body
    except (SyntaxError, ValueError):
        return code
    seen: set[str] = set()
    for node in body:
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            continue
        if node.name in seen:
            first_line = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            return "\n".join(code.split("\n")[:first_line - 1])
        seen.add(node.name)
    return code


def _complete_definitions(code: str) -> str:
    """A program cut off (``max_new_tokens``) or broken after its definitions: keep the longest
    prefix that parses, ends before a top-level line and still defines something. A cut inside
    a function is left alone: its syntax error is the truthful feedback."""
    if _parses(code):
        return code
    lines = code.split("\n")
    for end in range(len(lines) - 1, 0, -1):
        if not lines[end].strip() or lines[end][0].isspace():
            continue
        prefix = "\n".join(lines[:end])
        if _parses(prefix) and any(isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef,
                                                  ast.ClassDef)) for n in ast.parse(prefix).body):
            return prefix
    return code
