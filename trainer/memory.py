"""Keep the memory of freed tensors in the process instead of handing it back to the OS.

A training step allocates and frees the same few gigabytes of activations every time (the
logits of one micro-batch alone are hundreds of megabytes). glibc's defaults serve blocks above
a (dynamic, at most 32 MB) threshold with fresh ``mmap`` calls and give freed heap tops back to
the OS, so every step page-faults its activations in again: about a million minor faults, each
a zeroed 4 KiB page, per step of 4 MBPP sequences. Raising both thresholds keeps that memory for
the next step: no faults after the first step, and ~10-15% less time per step on the 2-vCPU VM
(docs/BENCHMARKS.md, "Training"). Peak resident memory stays about the same, since the next
step needs the same blocks again. The trainer runs in its own process, so the setting lives and
dies with the training run.

``use_huge_pages`` asks PyTorch to back its large CPU tensors (2 MiB and up) with transparent
huge pages: a block that does fault in (the first step, or a size not seen before: the logits'
rows change with every micro-batch) then costs one fault per 2 MiB instead of per 4 KiB. On the
2-vCPU AMX VM that made a training step ~14% faster (docs/BENCHMARKS.md, "Training"). PyTorch
reads the switch once, at its first allocation, so it is set before ``torch`` is imported: by
the trainer's own entry points.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

_M_TRIM_THRESHOLD = -1  # mallopt parameters, from glibc's malloc.h
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD = 1 << 30  # blocks up to 1 GiB come from the reusable heap
_TRIM_THRESHOLD = 2**31 - 1  # freed memory is never trimmed back to the OS


def keep_freed_memory() -> bool:
    """Set glibc's thresholds for this process; False where there is no glibc (no change)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and others: no mallopt, nothing to tune
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)) and \
        bool(mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD))


def use_huge_pages() -> bool:
    """Turn on PyTorch's transparent-huge-page allocations for this process (and its children).
    Call it before ``torch`` is imported; returns whether it can still take effect."""
    if not sys.platform.startswith("linux"):
        return False
    os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")
    return "torch" not in sys.modules
