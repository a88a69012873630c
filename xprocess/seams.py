"""Test seams: points where a test can stop a process at an exact line, to kill it there.

A variable naming a file turns a seam on: the process writes its pid (or the pid it names) into
the file when it reaches the seam, and waits, at most a minute, until the test removes the file.
Unset, a seam costs one look at the environment. The seams are documented where they are used
(``XPROCESS_TEST_HOLD_AFTER_SPAWN`` in ``starting``, ``XPROCESS_TEST_HOLD_CACHE_FILL`` in
``servers._pgcache``).
"""

from __future__ import annotations

import os
import time

__all__ = ["hold_at"]

_LONGEST_HOLD = 60.0


def hold_at(variable: str, pid: int) -> None:
    """The seam ``variable``: if it names a file, write ``pid`` there and wait until the file is
    gone (or a minute has passed)."""
    path = os.environ.get(variable)
    if not path:
        return
    with open(path, "w", encoding="ascii") as f:
        f.write(str(pid))
    deadline = time.monotonic() + _LONGEST_HOLD
    while os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.01)  # a test seam: the test removes the file when it has done its part
