"""Is a recorded process still the process we started?

A pid alone is not enough: once a process ends, the OS may hand its pid to an unrelated process.
A record therefore keeps when the process was created, and a pid whose current process was
created at another time is treated as dead: never reported live, never signalled.

On Linux (``HAVE_PROC_STAT``) the start time is read from ``/proc/<pid>/stat`` in clock ticks since
boot, which no change of the wall clock affects, and the kernel's boot id tells one boot from
another. Elsewhere psutil's create time (seconds since the epoch) is compared.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import psutil

__all__ = [
    "BOOT_ID",
    "HAVE_PROC_STAT",
    "Identity",
    "find_process",
    "identify",
    "is_alive",
]

HAVE_PROC_STAT = os.path.exists("/proc/self/stat") and hasattr(time, "CLOCK_BOOTTIME")
_TICKS = os.sysconf("SC_CLK_TCK") if HAVE_PROC_STAT else 100
# Start times are whole clock ticks: the same process always reads the same value.
_SAME_START = 0.5 / _TICKS if HAVE_PROC_STAT else 0.01


def _read_boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as f:
            return f.read().strip()
    except OSError:
        return ""


BOOT_ID = _read_boot_id()


@dataclass(frozen=True)
class Identity:
    """When a process started: since boot (Linux; None elsewhere) and as a wall-clock time."""

    since_boot: float | None
    create_time: float
    zombie: bool


def _boot_epoch() -> float:
    return time.time() - time.clock_gettime(time.CLOCK_BOOTTIME)


def identify(pid: int) -> Identity | None:
    """The identity of the process now holding ``pid``, or None if there is none."""
    if pid <= 0:
        return None
    if HAVE_PROC_STAT:
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                data = f.read()
        except OSError:
            return None
        # The command name (field 2) may hold spaces and parentheses: split after its last ')'.
        fields = data[data.rindex(b")") + 2 :].split()
        since_boot = int(fields[19]) / _TICKS
        return Identity(since_boot, _boot_epoch() + since_boot, fields[0] == b"Z")
    try:
        proc = psutil.Process(pid)
        with proc.oneshot():
            return Identity(None, proc.create_time(), proc.status() == psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return None


def is_alive(
    pid: int | None,
    create_time: float | None,
    since_boot: float | None = None,
    boot_id: str = "",
    *,
    ignore_zombies: bool = True,
) -> bool:
    """Whether ``pid`` still holds the process recorded with these start times."""
    if not pid or pid <= 0:
        return False
    now = identify(pid)
    if now is None or (ignore_zombies and now.zombie):
        return False
    if boot_id and BOOT_ID and boot_id != BOOT_ID:
        return False  # recorded during another boot: whatever holds the pid now is not it
    if now.since_boot is not None and since_boot is not None and boot_id and BOOT_ID:
        return abs(now.since_boot - since_boot) < _SAME_START
    if create_time is None:
        return True
    return abs(now.create_time - create_time) < max(_SAME_START, 0.01)


def find_process(
    pid: int | None,
    create_time: float | None,
    since_boot: float | None = None,
    boot_id: str = "",
    *,
    ignore_zombies: bool = True,
) -> psutil.Process | None:
    """The psutil handle of the recorded process if it still runs (see ``is_alive``), else None."""
    if not pid or pid <= 0:
        return None
    try:
        proc = psutil.Process(pid)
    except psutil.Error:
        return None
    # Checked after the handle is made: if the process is ours now, it was ours when the handle
    # was made (a pid is not reused while its process lives), and psutil refuses to signal a pid
    # that changed hands after that.
    if not is_alive(pid, create_time, since_boot, boot_id, ignore_zombies=ignore_zombies):
        return None
    return proc
