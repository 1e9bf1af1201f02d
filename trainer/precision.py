"""What a training run computes in: the one rule for ``--precision``, and bf16 for the frozen
base's matrix multiplies on a CPU.

LoRA training leaves the base model frozen, so on a CPU the base's linear layers (every
projection and the LM head) can multiply in bf16 from a bf16 copy of their weights made once,
while everything that learns or accumulates stays float32: the LoRA weights (the masters AdamW
updates) and their branch, the residual stream, norms, softmax, loss and optimiser state. The
frozen layer's output is cast back to float32 *before* the LoRA branch's output is added to it.
Autocast (the route measured before) instead returns the base layer's output in bf16 and adds the
LoRA delta to it in bf16, where a delta smaller than the output's bf16 spacing (~0.4% of it)
rounds away: early in a run, when the adapter's contribution is small, most of it is lost, which
is how autocast's loss curve came to sit above float32's. Autocast also casts every weight on
every forward; the copy here is made once per run.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

# The frozen-bf16 route passed the loss-curve check on a CPU with AMX (docs/BENCHMARKS.md,
# "Training"); CPUs without native bf16 never take it (``trainer.base_model.native_bf16``).
AUTO_BF16_ON_CPU = True


@dataclass(frozen=True)
class Precision:
    """What a run computes in: the base weights' dtype, and whether the frozen base's linear
    layers multiply in bf16 (CPU)."""

    name: str  # "fp32", "bf16" (bf16 weights, CUDA) or "bf16-frozen" (CPU, see the module doc)
    weights: Any  # torch dtype the base model is loaded in
    frozen_bf16: bool = False

    @contextmanager
    def applied(self, model: Any) -> Iterator[None]:
        """Run the block with this precision's forward on ``model`` (restored afterwards)."""
        if not self.frozen_bf16:
            yield
            return
        with frozen_linears_in_bf16(model):
            yield


def training_precision(precision: str, device: str) -> Precision:
    """The one rule for ``--precision``. ``auto`` is bf16 where the device multiplies it in
    hardware (``trainer.base_model.native_bf16``) and bf16 passed the loss-curve check there:
    CUDA, and CPUs while ``AUTO_BF16_ON_CPU``. Elsewhere float32. bf16 on CUDA loads bf16
    weights; on CPU it keeps float32 weights and multiplies the frozen base in bf16."""
    import torch

    from trainer import base_model

    if precision == "auto":
        allowed = device.startswith("cuda") or AUTO_BF16_ON_CPU
        precision = "bf16" if allowed and base_model.native_bf16(device) else "fp32"
    if precision == "fp32":
        return Precision("fp32", torch.float32)
    if device.startswith("cuda"):
        return Precision("bf16", torch.bfloat16)
    return Precision("bf16-frozen", torch.float32, frozen_bf16=True)


def _frozen_bf16_matmul() -> Any:
    """``x @ W.T`` from a bf16 copy of a frozen ``W``, in and out in ``x``'s dtype; the
    backward gives ``x`` its gradient the same way (``W`` has none to get)."""
    import torch

    class FrozenBf16Matmul(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, x: Any, weight: Any) -> Any:
            ctx.save_for_backward(weight)
            ctx.dtype = x.dtype
            return torch.nn.functional.linear(x.to(weight.dtype), weight).to(x.dtype)

        @staticmethod
        def backward(ctx: Any, grad: Any) -> tuple[Any, None]:
            (weight,) = ctx.saved_tensors
            return (grad.to(weight.dtype) @ weight).to(ctx.dtype), None

    return FrozenBf16Matmul


@contextmanager
def frozen_linears_in_bf16(model: Any) -> Iterator[int]:
    """Within the block, every ``nn.Linear`` of ``model`` whose weight is frozen multiplies from
    a bf16 copy of it (one copy per distinct weight: a tied LM head shares the embedding's).
    Yields how many layers it covers; their weights and modules are untouched."""
    import torch

    matmul = _frozen_bf16_matmul()
    copies: dict[int, Any] = {}
    patched = []
    for module in model.modules():
        if type(module) is not torch.nn.Linear or module.weight.requires_grad:
            continue
        weight = module.weight
        if id(weight) not in copies:
            copies[id(weight)] = weight.detach().to(torch.bfloat16).contiguous()
        copy, bias = copies[id(weight)], module.bias

        def forward(x: Any, _copy: Any = copy, _bias: Any = bias) -> Any:
            out = matmul.apply(x, _copy)
            return out if _bias is None else out + _bias

        module.forward = forward  # an instance attribute: nn.Module.__call__ finds it first
        patched.append(module)
    try:
        yield len(patched)
    finally:
        for module in patched:
            del module.forward
