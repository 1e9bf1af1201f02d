"""``dtype="auto"``: bfloat16 only where the device multiplies it natively, float32 elsewhere."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")


@pytest.mark.parametrize(("native", "want"), [(True, "bfloat16"), (False, "float32")])
def test_auto_takes_bfloat16_only_on_native_bf16_cpus(monkeypatch: pytest.MonkeyPatch,
                                                      native: bool, want: str) -> None:
    from trainer import base_model

    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: native)
    assert base_model.native_bf16("cpu") is native
    assert base_model.resolve_dtype("auto", "cpu") == getattr(torch, want)
    assert base_model.resolve_dtype("float32", "cpu") == torch.float32  # asked for: kept


def test_a_named_dtype_is_kept_and_a_bad_one_is_refused() -> None:
    from trainer.base_model import BaseModelError, resolve_dtype

    assert resolve_dtype("bfloat16", "cpu") == torch.bfloat16
    with pytest.raises(BaseModelError, match="unknown dtype"):
        resolve_dtype("float8", "cpu")
