"""Test instrumentation: the assert's own source text is what feedback quotes, and each test
source is compiled once however many samples of its task are checked."""

from __future__ import annotations

import ast

import pytest

from sandbox.runner.plans import _EqualityAsserts, instrument


@pytest.mark.parametrize("source", [
    "assert f('é') == 'ü'  # non-ASCII: column offsets count UTF-8 bytes\n",
    "x = 1\nassert f(\n  1,\n  2) == [3,\n 4], 'spans lines'\n",
    "assert   g(1)==2",
])
def test_quoted_assert_is_the_source_segment(source: str) -> None:
    rewriter = _EqualityAsserts(source)
    asserts = [n for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Assert)]
    assert asserts
    for node in asserts:
        assert rewriter.segment(node) == ast.get_source_segment(source, node)


def test_instrumented_tests_are_compiled_once() -> None:
    first = instrument("assert len([1, 2]) == 2", "<test 1>")
    assert instrument("assert len([1, 2]) == 2", "<test 1>") is first
    assert instrument("assert len([1, 2]) == 2", "<test 2>") is not first
    with pytest.raises(SyntaxError):
        instrument("assert (", "<test 1>")
