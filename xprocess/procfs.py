"""The reads of ``/proc`` the stop path makes for every process, each one system call.

A stop looks at every process of the machine (its parent, when it started) and at some of them
several times while they exit. psutil answers the same questions with more reads and more
Python per process; here each answer is one ``read`` of ``/proc/<pid>/stat``. Only with
``HAVE_PROC`` (Linux, unless ``XPROCESS_PORTABLE=1``); the callers fall back to psutil.

Every process is looked at, not only the pids handed out since a start: Linux hands them out in
increasing order, but the last one handed out can be set back (``ns_last_pid``, as
checkpoint/restore tools do), and a process created after the start may then hold any pid.
"""

from __future__ import annotations

import os

import psutil

from xprocess.capabilities import HAVE_PROC

__all__ = ["ProcStat", "all_pids", "ancestors", "read_stat"]


class ProcStat:
    """What ``/proc/<pid>/stat`` says of a process: its state letter, parent and start time
    (clock ticks since boot), and its remaining fields as they were read."""

    __slots__ = ("fields", "parent", "start_ticks", "state")

    def __init__(self, fields: list[bytes]) -> None:
        self.fields = fields
        self.state = fields[0]
        self.parent = int(fields[1])
        self.start_ticks = int(fields[19])

    @property
    def zombie(self) -> bool:
        return self.state == b"Z"


def read_stat(pid: int) -> ProcStat | None:
    """``/proc/<pid>/stat`` of ``pid``, or None if there is no such process."""
    try:
        fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        data = os.read(fd, 4096)  # os.read: a buffered file object costs as much again
    except OSError:
        return None
    finally:
        os.close(fd)
    if not data:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its last ')'.
    return ProcStat(data[data.rindex(b")") + 2 :].split())


def all_pids() -> list[int]:
    """Every pid of the machine (of this pid namespace)."""
    if HAVE_PROC:
        return [int(entry) for entry in os.listdir("/proc") if entry.isdigit()]
    return psutil.pids()


def ancestors(pid: int) -> list[int]:
    """The pids of ``pid``'s parent, its parent's parent, ... up to pid 1."""
    if not HAVE_PROC:
        try:
            return [p.pid for p in psutil.Process(pid).parents()]
        except psutil.Error:
            return []
    found: list[int] = []
    while pid > 1:
        stat = read_stat(pid)
        if stat is None or stat.parent in found:
            break
        pid = stat.parent
        if pid > 0:
            found.append(pid)
    return found
