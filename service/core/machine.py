"""What machine a figure was measured on: one reading of the CPU's name for every results file."""

from __future__ import annotations

import os
import platform
from pathlib import Path


def cpu_model() -> str:
    """The CPU's marketing name (``/proc/cpuinfo``), else what ``platform`` knows."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return cpu


def machine_summary() -> str:
    """One line for a benchmark's section: CPU, cores, kernel."""
    return f"{cpu_model()}, {os.cpu_count()} cores, {platform.system()} {platform.release()}"
