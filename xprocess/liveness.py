"""Is a recorded process still the process we started?

A pid alone is not enough: once a process ends, the OS may hand its pid to an unrelated process.
A record therefore keeps the process's create time, and a pid whose current process was created
at another time is treated as dead: never reported live, never signalled.
"""

from __future__ import annotations

import psutil

__all__ = ["CREATE_TIME_TOLERANCE", "create_time_of", "find_process"]

# psutil derives create times from boot time and clock ticks, so the same process always reads
# the same value; the tolerance only absorbs float rounding.
CREATE_TIME_TOLERANCE = 0.01


def create_time_of(pid: int) -> float:
    """The create time of ``pid`` as psutil reports it (raises psutil.Error if it is gone)."""
    return psutil.Process(pid).create_time()


def find_process(
    pid: int | None,
    create_time: float | None,
    *,
    ignore_zombies: bool = True,
) -> psutil.Process | None:
    """The live process ``pid`` if it is the one created at ``create_time``, else None.

    With ``ignore_zombies`` a process that has exited but not been reaped counts as gone.
    """
    if not pid or pid <= 0:
        return None
    try:
        proc = psutil.Process(pid)
        with proc.oneshot():
            if create_time is not None and (
                abs(proc.create_time() - create_time) > CREATE_TIME_TOLERANCE
            ):
                return None
            if ignore_zombies and proc.status() == psutil.STATUS_ZOMBIE:
                return None
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None
    return proc
