"""The rule: SQL lives in ``service/store``. Everything else in ``service`` calls its
functions (importing row classes for typing is fine), so queries have one home."""

from __future__ import annotations

import re
from pathlib import Path

SERVICE = Path(__file__).resolve().parents[2] / "service"
STORE = SERVICE / "store"

FORBIDDEN = re.compile(
    r"^\s*(?:from|import)\s+sqlalchemy(?!\.exc\b)"  # query constructs (errors are fine)
    r"|(?<![\w.])(?<!def )(?:select|update|delete|insert)\("  # statements (not methods)
    r"|(?<!torch)\.where\("  # torch.where is a tensor op, not a query
    r"|\bsession\.(?:execute|scalars?|query|get|add|add_all|delete|merge|flush)\("
    r"|\bfunc\.\w+\(")


def offences(root: Path = SERVICE) -> list[str]:
    found = []
    for path in sorted(root.rglob("*.py")):
        if STORE in path.parents:
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if FORBIDDEN.search(line):
                found.append(f"{path.relative_to(root.parent)}:{number}: {line.strip()}")
    return found


def test_no_sql_outside_the_store() -> None:
    assert offences() == [], "move these queries into a service/store module:\n" + \
        "\n".join(offences())


def test_the_scan_catches_a_query(tmp_path: Path) -> None:
    (tmp_path / "bad.py").write_text(
        "from sqlalchemy import select\n"
        "rows = session.scalars(select(Row).where(Row.id == 1))\n"
        "n = session.scalar(select(func.count()))\n"
        "session.add(row)\n"
        "x = torch.where(a, b, c)\n"
        "from sqlalchemy.exc import OperationalError\n"
        "digest.update(block)\n"
        "    def update(self, key, value):\n", encoding="utf-8")
    assert [line.split(":")[1] for line in offences(tmp_path)] == ["1", "2", "3", "4"]
