"""What the runner makes of a job's code before any process runs it.

The program and setup are compiled here; each test is planned (``plan_test``): a VALUE test
is decided by the runner comparing a value, a JUDGED one by the judge running its code with
the equality asserts rewritten (``instrument``). Everything is cached per source: the samples
of one task share their tests, and code objects are immutable.
"""

from __future__ import annotations

import ast
import functools
import json
import traceback
from types import CodeType

from .names import PROGRAM_FILE, SETUP_FILE, test_file
from .plain import to_plain

EQ_HELPER = "__leti_assert_eq__"  # the name a rewritten assert calls (the judge defines it)
VALUE, JUDGED = "value", "judged"


def _placed(node: ast.expr, where: ast.expr) -> ast.expr:
    """``node`` at ``where``'s source position (``ast.copy_location`` without its checks)."""
    node.lineno, node.col_offset = where.lineno, where.col_offset
    node.end_lineno, node.end_col_offset = where.end_lineno, where.end_col_offset
    return node


def _contains_call(node: ast.AST) -> bool:
    return isinstance(node, ast.Call) or any(isinstance(n, ast.Call) for n in ast.walk(node))


class _EqualityAsserts:
    """Rewrites ``assert L == R[, msg]`` into ``assert helper(L, R, src)[, msg]``.

    The helper evaluates both sides once, keeps their reprs for "expected X, got Y", and refuses
    values that also equal a fresh sentinel object (an ``__eq__`` that always answers True).
    """

    def __init__(self, source: str) -> None:
        self.lines = source.splitlines(True)

    def rewrite_assert(self, node: ast.Assert) -> None:
        test = node.test
        if isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], ast.Eq):
            left, right = test.left, test.comparators[0]
            # The side that calls something is the program's answer; the other is expected.
            # (Left first: it is usually the call, and the expected side a long literal.)
            swapped = not _contains_call(left) and _contains_call(right)
            actual, expected = (right, left) if swapped else (left, right)
            call = ast.Call(func=_placed(ast.Name(id=EQ_HELPER, ctx=ast.Load()), test),
                            args=[actual, expected, _placed(ast.Constant(self.segment(node)), test)],
                            keywords=[])
            node.test = _placed(call, test)

    def rewrite(self, tree: ast.Module) -> ast.Module:
        """Rewrite every equality assert of ``tree`` in place, visiting statements only.

        Asserts are statements and no expression holds a statement, so the expressions (most
        of a test's nodes) are never walked: what ``NodeTransformer.visit`` spent most of its
        time on."""
        stack: list[ast.AST] = [tree]
        while stack:
            for _, value in ast.iter_fields(stack.pop()):
                if isinstance(value, list):
                    for item in value:
                        if isinstance(item, ast.Assert):
                            self.rewrite_assert(item)
                        elif isinstance(item, (ast.stmt, ast.excepthandler, ast.match_case)):
                            stack.append(item)
        return tree

    def segment(self, node: ast.stmt) -> str:
        """The statement's source text (``ast.get_source_segment`` without its slow line split)."""
        if node.end_lineno is None or node.end_col_offset is None:
            return ""
        lines = [line.encode() for line in self.lines[node.lineno - 1:node.end_lineno]]
        if not lines:
            return ""
        if len(lines) == 1:
            return lines[0][node.col_offset:node.end_col_offset].decode(errors="replace")
        lines[0], lines[-1] = lines[0][node.col_offset:], lines[-1][:node.end_col_offset]
        return b"".join(lines).decode(errors="replace")


@functools.lru_cache(maxsize=4096)
def instrument(source: str, filename: str) -> CodeType:
    """Compile test code with the equality asserts rewritten; raises SyntaxError for bad tests.

    Cached: the samples of one task share its tests, and code objects are immutable (a job's
    child gets its own copy of everything anyway)."""
    tree = ast.parse(source, filename=filename)
    return compile(_EqualityAsserts(source).rewrite(tree), filename, "exec", dont_inherit=True)


@functools.lru_cache(maxsize=64)
def compile_setup(source: str) -> CodeType:
    """Compile a task's setup code (most are empty; the samples of a task share theirs)."""
    return compile(source, SETUP_FILE, "exec", dont_inherit=True)

def compile_program(program: str) -> tuple[CodeType | None, dict | None]:
    """The program's code object, or the outcome fields of a program that does not compile.

    Compiled in the runner, not in the job's child: a program that does not compile is answered
    here (the child forked for it in advance exits unused), and the child does not pay for the
    compiler's memory (see ``Zygote``).
    """
    try:
        return compile(program, PROGRAM_FILE, "exec", dont_inherit=True), None
    except SyntaxError as exc:
        error: BaseException = exc
        text = exc.msg + (f" (line {exc.lineno})" if exc.lineno else "")
    except (ValueError, RecursionError, MemoryError) as exc:  # NUL bytes, absurd nesting
        error, text = exc, str(exc)
    return None, {"status": "syntax_error", "error_type": type(error).__name__,
                  "message": f"{type(error).__name__}: {text}",
                  "traceback": "".join(traceback.format_exception_only(type(error), error))}


def _literal(node: ast.expr) -> tuple[bool, object]:
    try:
        return True, ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False, None


@functools.lru_cache(maxsize=4096)
def plan_test(source: str, index: int) -> tuple:
    """How test ``index`` is decided: ``(VALUE, actual_code, expected, statement, binds,
    bound, expected_json)`` or ``(JUDGED, code, None, statement, binds, 0, b"")``.

    A test that is one ``assert <expression> == <literal>`` (either side) is a VALUE test: the
    program's process evaluates only the expression (``actual_code``) and sends back its value
    as plain data, the literal never enters that process, and the runner compares. Every other
    test is JUDGED: its code (asserts rewritten, ``instrument``) runs in the judge, a process of
    its own, where the program's names are stand-ins that call into the program's process.
    ``binds``: the test is not a bare assert (it may define names later tests use); ``bound``:
    the most bytes a value equal to the expected one can take as plain data (8x its own, plus
    slack), so a huge value is failed without being decoded; ``expected_json``: the expected
    value as the program's process would encode it (an answer equal byte for byte decodes to
    an equal value, so it needs no decoding).
    Cached: the samples of a task share its tests; code objects are immutable."""
    filename = test_file(index)
    tree = ast.parse(source, filename=filename)  # a VALUE test is compiled only as its call
    binds = not all(isinstance(node, ast.Assert) for node in tree.body)
    if len(tree.body) == 1 and isinstance(tree.body[0], ast.Assert):
        node = tree.body[0]
        statement = _EqualityAsserts(source).segment(node)
        test = node.test
        if isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], ast.Eq):
            left, right = test.left, test.comparators[0]
            for actual, expected_node in ((left, right), (right, left)):
                is_literal, expected = _literal(expected_node)
                if is_literal:
                    actual_code = compile(ast.Expression(body=actual), filename, "eval",
                                          dont_inherit=True)
                    try:
                        expected_json = json.dumps(to_plain(expected)).encode()
                    except (ValueError, TypeError):
                        break
                    bound = 8 * len(expected_json) + 4096
                    return VALUE, actual_code, expected, statement, binds, bound, expected_json
        return JUDGED, instrument(source, filename), None, statement, binds, 0, b""
    return JUDGED, instrument(source, filename), None, source.strip(), binds, 0, b""
