"""The loop's own key-value state (``loop_state``): round, task cursor, running flag, the base
model's gate figure. One JSON value per key, so a restarted service resumes where it was."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from service.store.models import LoopStateRow


def get_value(session: Session, key: str, default: Any = None) -> Any:
    """A key's value, or ``default`` when the loop never wrote it (a fresh store)."""
    row = session.get(LoopStateRow, key)
    return default if row is None else row.value


def set_value(session: Session, key: str, value: Any) -> None:
    """Write one key (insert or overwrite); the caller's transaction commits several together."""
    row = session.get(LoopStateRow, key)
    if row is None:
        session.add(LoopStateRow(key=key, value=value))
    else:
        row.value = value
