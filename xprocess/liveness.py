"""Is a recorded process still the process we started?

A pid alone is not enough: once a process ends, the OS may hand its pid to an unrelated process.
A record therefore keeps when the process was created, and a pid whose current process was
created at another time is treated as dead: never reported live, never signalled.

With ``HAVE_PROC_STAT`` (Linux) the start time is read from ``/proc/<pid>/stat`` in clock ticks
since boot, which no change of the wall clock affects, and the kernel's boot id tells one boot
from another. Elsewhere psutil's create time (seconds since the epoch) is compared. Both are
as fine as the kernel keeps them: one clock tick (10 ms) on Linux. A pid handed out again within
that tick would pass, so a record also says whether its process leads its own session, as every
process xprocess starts does for its whole life (a session leader cannot leave its session, and
its session id is its pid): a pid whose process does not lead a session is not ours.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import psutil

from xprocess.capabilities import HAVE_PROC_STAT
from xprocess.procfs import read_stat

__all__ = [
    "BOOT_ID",
    "HAVE_PROC_STAT",
    "Identity",
    "exited_zero",
    "find_process",
    "identify",
    "is_alive",
]

_TICKS = os.sysconf("SC_CLK_TCK") if HAVE_PROC_STAT else 100
# Start times are whole clock ticks on Linux, microseconds on macOS: the same process always
# reads the same value, another one (created a tick later) differs by a whole tick.
_SAME_START = 0.5 / _TICKS


# Without /proc a boot is told by its boot time, to the second: "boot-<epoch seconds>".
_BOOT_TIME_PREFIX = "boot-"


def _read_boot_id() -> str:
    if HAVE_PROC_STAT:
        try:
            with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as f:
                return f.read().strip()
        except OSError:
            return ""
    try:
        return f"{_BOOT_TIME_PREFIX}{int(psutil.boot_time())}"
    except (psutil.Error, OSError, RuntimeError):
        return ""


def other_boot(boot_id: str) -> bool:
    """Whether ``boot_id`` (of a record) names a boot other than this one. Only ids of the same
    kind are compared: a record written on Linux's fast path, read on the portable one, is not
    taken for another boot's."""
    if not boot_id or not BOOT_ID:
        return False
    if boot_id.startswith(_BOOT_TIME_PREFIX) != BOOT_ID.startswith(_BOOT_TIME_PREFIX):
        return False
    return boot_id != BOOT_ID


BOOT_ID = _read_boot_id()
# The epoch time of boot as psutil computes it (``btime`` of /proc/stat), so that a create time
# computed here equals psutil's: a record written on one path is read correctly on the other.
_BOOT_EPOCH = psutil.boot_time() if HAVE_PROC_STAT else 0.0


def _leads_session(pid: int) -> bool | None:
    try:
        return os.getsid(pid) == pid
    except (OSError, AttributeError):  # gone, not visible, or no sessions (Windows)
        return None


@dataclass(frozen=True)
class Identity:
    """When a process started: since boot (Linux; None elsewhere) and as a wall-clock time;
    whether it has exited unreaped, whether it leads its session (None if unknown), and, for one
    that exited unreaped, its wait status (None if unknown: read from /proc on Linux only)."""

    since_boot: float | None
    create_time: float
    zombie: bool
    leads_session: bool | None = None
    exit_status: int | None = None


def identify(pid: int) -> Identity | None:
    """The identity of the process now holding ``pid``, or None if there is none."""
    if pid <= 0:
        return None
    if HAVE_PROC_STAT:
        stat = read_stat(pid)
        if stat is None:
            return None
        since_boot = stat.start_ticks / _TICKS
        zombie = stat.zombie
        # Field 52, the wait status of an exited thread (Linux 3.5+), readable by its user.
        fields = stat.fields
        status = int(fields[49]) if zombie and len(fields) > 49 else None
        return Identity(since_boot, _BOOT_EPOCH + since_boot, zombie, _leads_session(pid), status)
    try:
        proc = psutil.Process(pid)
        with proc.oneshot():
            create_time, zombie = proc.create_time(), proc.status() == psutil.STATUS_ZOMBIE
    except psutil.Error:
        return None
    return Identity(None, create_time, zombie, _leads_session(pid))


def is_alive(
    pid: int | None,
    create_time: float | None,
    since_boot: float | None = None,
    boot_id: str = "",
    *,
    ignore_zombies: bool = True,
    leads_session: bool = False,
) -> bool:
    """Whether ``pid`` still holds the process recorded with these start times.

    ``leads_session``: the recorded process led its own session, so one that does not is another.
    """
    if not pid or pid <= 0:
        return False
    now = identify(pid)
    if now is None or (ignore_zombies and now.zombie):
        return False
    if leads_session and now.leads_session is False:
        return False
    if other_boot(boot_id):
        return False  # recorded during another boot: whatever holds the pid now is not it
    if now.since_boot is not None and since_boot is not None and boot_id and BOOT_ID:
        return abs(now.since_boot - since_boot) < _SAME_START
    if create_time is None:
        return True
    return abs(now.create_time - create_time) < _SAME_START


def exited_zero(pid: int, identity: Identity) -> bool | None:
    """Whether ``pid`` (of ``identity``, a zombie) exited with code 0; None when that cannot be
    told (a process that is not our child, where /proc is not read)."""
    status = identity.exit_status
    if status is None and hasattr(os, "waitid"):
        try:  # our own child: its status, left for whoever reaps it (WNOWAIT)
            info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except (ChildProcessError, OSError):
            info = None
        if info is not None:
            return info.si_code == os.CLD_EXITED and info.si_status == 0
    if status is None:
        return None
    return os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


def find_process(
    pid: int | None,
    create_time: float | None,
    since_boot: float | None = None,
    boot_id: str = "",
    *,
    ignore_zombies: bool = True,
    leads_session: bool = False,
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
    alive = is_alive(
        pid,
        create_time,
        since_boot,
        boot_id,
        ignore_zombies=ignore_zombies,
        leads_session=leads_session,
    )
    if not alive:
        return None
    return proc
