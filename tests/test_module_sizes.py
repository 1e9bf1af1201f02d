"""The house's size rule, checked: no module of service/, trainer/ or sandbox/ over about 300
lines, and no function over 60 lines unless its first line says why it is long on purpose
(``# Long on purpose: ...``). A long file or function is usually several jobs in one."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("service", "trainer", "sandbox")
MAX_MODULE_LINES = 300
MAX_FUNCTION_LINES = 60
REASON = "# Long on purpose:"


def modules() -> list[Path]:
    return sorted(p for package in PACKAGES for p in (REPO / package).rglob("*.py"))


def long_functions(path: Path, root: Path = REPO) -> list[str]:
    """Functions over the limit whose first body line does not give the reason."""
    lines = path.read_text(encoding="utf-8").splitlines()
    found = []
    for node in ast.walk(ast.parse("\n".join(lines))):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        length = (node.end_lineno or node.lineno) - node.lineno + 1
        first = lines[node.body[0].lineno - 2].strip()  # the line before the first statement
        if length > MAX_FUNCTION_LINES and not first.startswith(REASON):
            found.append(f"{path.relative_to(root)}:{node.lineno} {node.name} ({length} lines)")
    return found


def test_the_rule_sees_the_packages() -> None:
    assert len(modules()) > 100


@pytest.mark.parametrize("package", PACKAGES)
def test_no_module_is_over_the_limit(package: str) -> None:
    over = [f"{p.relative_to(REPO)} ({n} lines)" for p in modules()
            if p.parts[len(REPO.parts)] == package
            and (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES]
    assert not over, f"split these by job: {over}"


@pytest.mark.parametrize("package", PACKAGES)
def test_no_function_is_over_the_limit_without_a_reason(package: str) -> None:
    over = [f for p in modules() if p.parts[len(REPO.parts)] == package
            for f in long_functions(p)]
    assert not over, f"split these, or say why at their top ({REASON} ...): {over}"


def test_a_long_function_without_a_reason_is_found(tmp_path: Path) -> None:
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES))
    probe = tmp_path / "probe.py"
    probe.write_text(f"def long():\n{body}\n", encoding="utf-8")
    assert long_functions(probe, tmp_path) == [f"probe.py:1 long ({MAX_FUNCTION_LINES + 1} lines)"]
    probe.write_text(f"def long():\n    {REASON} a table\n{body}\n", encoding="utf-8")
    assert long_functions(probe, tmp_path) == []
