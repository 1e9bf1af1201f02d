"""``AdapterSwitch`` rollbacks against the store, with a stand-in generator (no model): the
adapter a promotion replaced serves again, and a rollback to the base model rejects the
serving adapter; each is recorded as a decision."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from service.loop.adapters import AdapterSwitch
from service.store import lineage
from service.store.db import Store


@dataclass
class Loaded:
    name: str
    retiring: bool = False


class FakeGenerator:
    alias = "policy"

    def __init__(self, serving: str | None, loaded: list[str]) -> None:
        self.serving = serving
        self.loaded = list(loaded)

    def list_adapters(self) -> list[Loaded]:
        return [Loaded(n) for n in self.loaded]

    async def load_adapter(self, name: str, path: str) -> None:
        self.loaded.append(name)

    async def unload_adapter(self, name: str) -> None:
        self.loaded.remove(name)

    async def activate(self, name: str | None) -> None:
        self.serving = name


def test_rollback_to_the_replaced_adapter_then_to_the_base_model(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path}/leti.db")
    store.migrate()
    with store.write() as session:
        for name in ("policy-v1", "policy-v2"):
            (tmp_path / name).mkdir()
            lineage.register_adapter(session, name=name, path=str(tmp_path / name),
                                     base_model="smol", parent_id=None)
        lineage.decide(session, "policy-v1", "promote", "first")
        lineage.decide(session, "policy-v2", "promote", "better")
    generator = FakeGenerator("policy-v2", ["policy-v2"])
    switch = AdapterSwitch(None, store, None, SimpleNamespace(generator=generator))  # type: ignore[arg-type]

    async def both() -> tuple[dict[str, Any], dict[str, Any]]:
        back = await switch.rollback(None)
        base = await switch.rollback("base")
        await switch.wait()
        return back, base

    back, base = asyncio.run(both())
    assert (back["adapter"], back["previous"], back["decision"]) == \
        ("policy-v1", "policy-v2", "rollback")
    assert (base["adapter"], base["previous"], base["decision"]) == \
        ("policy-v1", None, "rollback")
    assert base["reason"] == "rolled back from policy-v1 to the base model"
    assert generator.serving is None
    with store.read() as session:
        assert lineage.serving_adapter(session) is None
        states = {a.id: a.state for a in lineage.list_adapters(session)}
    assert states == {"policy-v1": "rejected", "policy-v2": "rejected"}
