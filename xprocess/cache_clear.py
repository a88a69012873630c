"""Coordinating ``--cache-clear`` with the runs working on the records at the same moment.

``--cache-clear`` empties ``<cache_dir>/d``, where the records live, so the clearing run carries
them over (``paths.set_records_aside``). Another run working on them meanwhile would find no
record and start a second copy, skip its end-of-run stops, and its watchdog would think the run
had ended. So every process that works on the records (a run's ``xprocess`` fixture, its end,
its watchdog) holds a shared lock on ``<cache_dir>/xprocess-runs.lock``, and a ``--cache-clear``
takes it exclusively, without waiting: while anyone holds it, the clear is refused.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from xprocess import capabilities
from xprocess.locking import flock

__all__ = ["EXCLUSIVE_WAIT", "hold_records", "runs_lock_path"]

# How long a --cache-clear waits for the runs on the records to let go before it is refused.
EXCLUSIVE_WAIT = 10.0

_RUNS_LOCK = "xprocess-runs.lock"
_CACHED_ROOT = (".xprocess", "d")  # <cache_dir>/d/.xprocess


def runs_lock_path(root: Path) -> Path | None:
    """The lock every run on the records root ``root`` holds, shared, while it works, and a
    ``--cache-clear`` takes exclusively before it moves the records aside: beside ``d``, in the
    cache directory, which pytest does not clear. None for a root outside the cache."""
    if (root.name, root.parent.name) == _CACHED_ROOT:
        return root.parent.parent / _RUNS_LOCK
    return None


def hold_records(root: Path, *, exclusive: bool = False) -> int | None:
    """Take the runs lock of ``root`` (see ``runs_lock_path``): shared, waiting for a cache clear
    in progress to put the records back; or ``exclusive``, waiting at most ``EXCLUSIVE_WAIT``
    seconds (the watchdog of a run that just ended is exiting), then BlockingIOError: another
    run holds it. Returns its descriptor, to keep open while the run works; None when there is
    no such lock or it cannot be made (a read-only cache: nothing can be moved there either)."""
    path = runs_lock_path(root)
    if path is None or not capabilities.SUPPORTED:
        return None  # Windows: no flock; xprocess refuses to start anything there anyway
    flags = os.O_CLOEXEC | os.O_NOFOLLOW
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | flags, 0o644)
    except OSError:
        try:  # a read-only cache: a lock made before still works
            fd = os.open(path, os.O_RDONLY | flags)
        except OSError:
            return None
    try:
        if exclusive:
            _lock_exclusive(fd, time.monotonic() + EXCLUSIVE_WAIT)
        else:
            flock(fd, exclusive=False)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _lock_exclusive(fd: int, deadline: float) -> None:
    delay = 0.01
    while True:
        try:
            flock(fd, wait=False)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise
        # flock has no timeout of its own: look again, less and less often.
        time.sleep(delay)
        delay = min(delay * 2, 0.5)
