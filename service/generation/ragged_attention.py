"""The fast path's CPU attention kernel for rows of different lengths (``csrc/ragged_attention.cpp``).

Why a kernel of our own: a decode batch's rows hold very different numbers of tokens, and
ATen's fused CPU attention reads every column of the buffer it is given (a mask only zeroes
weights), at about half the machine's memory bandwidth at decode shapes. This kernel reads each
row's keys and values up to that row's length only; docs/BENCHMARKS.md has the measurements,
and what was tried first (FlexAttention on CPU, other libraries' kernels).

It is compiled once per machine by torch's C++ extension loader (a C++ compiler, ninja and
Python's headers; ``scripts/install.sh`` installs them and builds it, ``python -m
service.generation.ragged_attention`` builds it by hand) and cached in torch's extensions
directory. Where it cannot be built, ``kernel()`` says why once in the log and returns None, and
the fast path attends over masked columns with ATen's kernel instead: the same results, slower.
"""

from __future__ import annotations

import logging
import subprocess
import threading
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

SOURCE = Path(__file__).parent / "csrc" / "ragged_attention.cpp"
_FLAGS = {  # the instruction sets ATen's own kernels of that capability are built for
    "AVX512": ["-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mfma"],
    "AVX2": ["-mavx2", "-mfma", "-mf16c"],
}
_lock = threading.Lock()
_loaded: dict[str, Any] = {}  # "module" once built, or "error": why it could not be


def build() -> Any:
    """Compile (or load the cached build of) the kernel for this CPU; raises when it cannot."""
    import torch
    from torch.utils.cpp_extension import load

    capability = torch.backends.cpu.get_cpu_capability()
    flags = _FLAGS.get(capability, [])
    defines = [f"-DCPU_CAPABILITY={capability}", f"-DCPU_CAPABILITY_{capability}"] if flags else []
    # -fopenmp: ATen's parallel_for is inlined from headers, and runs on one thread without it.
    return load(name=f"leti_ragged_attention_{capability.lower()}", sources=[str(SOURCE)],
                extra_cflags=["-O3", "-fopenmp", *flags, *defines], extra_ldflags=["-fopenmp"],
                verbose=False)


def kernel() -> Any | None:
    """The built kernel module (``ragged_attention(q, k, v, lengths, scale)``), or None where
    it cannot be built here (the reason logged once)."""
    if _loaded:  # settled: no lock on the decode step's path
        return _loaded.get("module")
    with _lock:
        if not _loaded:
            try:
                _loaded["module"] = build()
            except (RuntimeError, OSError, ImportError, subprocess.SubprocessError) as error:
                # no compiler, no ninja, headers missing, a failed compile: fall back
                _loaded["error"] = f"{type(error).__name__}: {error}"
                log.warning("ragged attention kernel unavailable, attending over masked "
                            "columns instead (slower): %s", _loaded["error"])
        return _loaded.get("module")


if __name__ == "__main__":
    module = build()
    print(f"built: {module.__file__}")
