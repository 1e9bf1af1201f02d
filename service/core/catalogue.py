"""The benchmark tasks the service knows: MBPP (from ``LETI_MBPP_PATH``) and HumanEval.

Loaded into the store at start-up, once: later start-ups only add what is missing. A configured
MBPP file that cannot be read stops the start-up (the message names the line); with no file
configured MBPP is simply absent (the service never reaches for the network on its own).
"""

from __future__ import annotations

import logging

from sandbox.tasks import Task, TaskDataError, load_humaneval, load_mbpp
from service.core.config import Settings
from service.store.db import Store
from service.store.tasks import sync_catalogue

log = logging.getLogger(__name__)


def benchmark_tasks(settings: Settings) -> list[Task]:
    """MBPP and HumanEval tasks as configured."""
    tasks: list[Task] = []
    if settings.mbpp_path is not None:
        tasks += load_mbpp(settings.mbpp_path)
    else:
        log.info("LETI_MBPP_PATH is not set: no MBPP tasks")
    if settings.load_humaneval:
        try:
            tasks += load_humaneval()
        except TaskDataError as exc:
            log.warning("HumanEval tasks not loaded: %s", exc)
    return tasks


def load_catalogue(store: Store, settings: Settings) -> int:
    """Add missing benchmark tasks to the store; returns how many were added."""
    tasks = benchmark_tasks(settings)
    with store.write() as session:
        added = sync_catalogue(session, tasks)
    if added:
        log.info("added %d benchmark tasks to the store", added)
    return added
