"""Bytes over pipes: length-prefixed messages between the program's process and the judge, and
the runner's writes and reads that never wait on a job's process."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

from .plain import TooLarge

FRAME_CAP = 16 * 2**20  # bytes of one message between the program's process and the judge


def send_frame(fd: int, message: object) -> None:
    """One length-prefixed JSON message between the program's process and the judge."""
    data = json.dumps(message).encode()
    view = memoryview(len(data).to_bytes(4, "little") + data)
    while view:
        view = view[os.write(fd, view):]


def recv_frame(fd: int) -> Any:
    """The next message from ``fd``; None at end of input (the other process is gone)."""
    head = _read_exactly(fd, 4)
    if head is None:
        return None
    size = int.from_bytes(head, "little")
    if size > FRAME_CAP:
        while size > 0 and (chunk := os.read(fd, min(size, 1 << 20))):  # skip it, stay in step
            size -= len(chunk)
        raise TooLarge(f"a message of {int.from_bytes(head, 'little')} bytes (over {FRAME_CAP})")
    body = _read_exactly(fd, size)
    return None if body is None else json.loads(body)


def _read_exactly(fd: int, size: int) -> bytes | None:
    chunks, left = [], size
    while left:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def write_all(fd: int, data: bytes) -> None:
    """Write all of ``data`` to the judge's job pipe; a judge that is gone gets none of it."""
    view = memoryview(data)
    try:
        while view:
            view = view[os.write(fd, view):]
    except OSError:
        pass  # the judge is gone (killed by the program): the job ends without its verdict


def drain(fd: int, sink: Callable[[bytes], None], cap: int) -> None:
    """Read what is already buffered in ``fd`` (at most ``cap`` bytes) without waiting."""
    os.set_blocking(fd, False)
    try:
        while cap > 0 and (chunk := os.read(fd, 65536)):
            sink(chunk)
            cap -= len(chunk)
    except OSError:
        pass


def write_some(fd: int, data: memoryview) -> int:
    """Write what a non-blocking pipe takes now; how many bytes that was."""
    try:
        return os.write(fd, data) if data else 0
    except BlockingIOError:
        return 0
