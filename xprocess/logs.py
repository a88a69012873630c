"""Reading parts of a process's log without reading all of it."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["log_size", "read_since", "read_tail"]

_TAIL_BYTES = 64 * 1024


def log_size(logpath: Path | str) -> int:
    """The current size of the log in bytes (0 when it does not exist)."""
    try:
        return os.stat(logpath).st_size
    except OSError:
        return 0


def read_tail(logpath: Path | str, offset: int, count: int) -> list[str]:
    """The last ``count`` non-blank lines written at or after byte ``offset``.

    Reads at most the last 64 KiB, however long the log is.
    """
    try:
        with open(logpath, "rb") as log:
            end = log.seek(0, os.SEEK_END)
            if end < offset:  # truncated since (copytruncate, or a fresh start): take it all
                offset = 0
            start = max(offset, end - _TAIL_BYTES)
            log.seek(start)
            data = log.read(end - start)
    except OSError:
        return []
    lines = data.decode("utf-8", "replace").splitlines()
    if start > offset and lines:
        lines = lines[1:]  # the first line was cut by the 64 KiB window
    return [line.rstrip() for line in lines if line.strip()][-count:]


def read_since(logpath: Path | str, offset: int, limit: int) -> tuple[str, bool]:
    """What was written from byte ``offset`` on, at most its last ``limit`` bytes.

    Returns the text and whether the beginning was cut off.
    """
    try:
        with open(logpath, "rb") as log:
            end = log.seek(0, os.SEEK_END)
            if end < offset:  # the log was truncated (a fresh start): take it all
                offset = 0
            start = max(offset, end - limit)
            log.seek(start)
            data = log.read(end - start)
    except OSError:
        return "", False
    return data.decode("utf-8", "replace"), start > offset
