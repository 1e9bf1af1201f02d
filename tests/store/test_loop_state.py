"""The loop's key-value state (``service.store.loop_state``), on a real SQLite store."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.store import loop_state
from service.store.db import Store


@pytest.fixture
def store(tmp_path: Path) -> Store:
    store = Store(f"sqlite:///{tmp_path}/leti.db")
    store.migrate()
    return store


def test_values_default_insert_overwrite_and_survive_a_reopen(store: Store,
                                                             tmp_path: Path) -> None:
    with store.read() as session:
        assert loop_state.get_value(session, "round") is None
        assert loop_state.get_value(session, "round", 0) == 0
    with store.write() as session:
        loop_state.set_value(session, "round", 1)
        loop_state.set_value(session, "gate", {"results": [1, 0], "seed": 7})
    with store.write() as session:
        loop_state.set_value(session, "round", 2)  # overwrite, not a second row
    store.close()
    reopened = Store(f"sqlite:///{tmp_path}/leti.db")
    with reopened.read() as session:
        assert loop_state.get_value(session, "round", 0) == 2
        assert loop_state.get_value(session, "gate") == {"results": [1, 0], "seed": 7}


def test_a_failed_transaction_writes_no_value(store: Store) -> None:
    with pytest.raises(RuntimeError), store.write() as session:
        loop_state.set_value(session, "running", True)
        raise RuntimeError("the round failed")
    with store.read() as session:
        assert loop_state.get_value(session, "running", False) is False
