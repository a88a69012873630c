"""Following a launcher that daemonizes: the process that stands for a start whose launcher exited.

A launcher that forks and exits 0 (``pg_ctl start``, ``redis-server --daemonize yes``, an
init-style script) leaves the real server behind. While waiting for readiness, the waiter asks
``StartedProcess.exit_code``: the launcher exiting 0 while processes carrying its token remain (or
members of its session, looked at while the launcher is an unreaped zombie, so its session number
cannot be anyone else's) is not an exit; the oldest of them is the started process from then on.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING

import psutil

from xprocess.procfs import all_pids
from xprocess.tokens import allowed_uids, carriers, process_uid

if TYPE_CHECKING:
    from xprocess.logwatch import LogWatcher

__all__ = ["StartedProcess", "find_daemon"]


class StartedProcess:
    """The started process as the waiter sees it: the launched one, or the daemon it left.

    A launcher that exits 0 while processes carrying its token remain has daemonized; from then
    on the oldest of those is the started process, and it exiting is the process exiting.
    """

    def __init__(
        self,
        popen: subprocess.Popen[bytes] | None,
        token: str,
        on_daemon: Callable[[int], None] | None = None,
    ) -> None:
        self.popen = popen
        self.token = token
        self.on_daemon = on_daemon
        self.daemon: psutil.Process | None = None
        self.daemonized = False
        # The user it runs as (popen_kwargs may name another): its daemon runs as that user too.
        self.uids = allowed_uids([process_uid(popen.pid)] if popen is not None else [])

    @property
    def pid(self) -> int | None:
        if self.daemon is not None:
            return self.daemon.pid
        return self.popen.pid if self.popen is not None else None

    def exit_code(self, watcher: LogWatcher | None = None) -> int | None:
        """None while the started process (or the daemon it became) runs, else an exit code."""
        if self.popen is None:
            return None
        if self.daemon is not None:
            if _runs(self.daemon):
                return None
            self.daemon = None  # the daemon exited: another process it left may stand for it
        elif self.popen.returncode is None and _exited_zero_unreaped(self.popen.pid):
            # Looked for before the launcher is reaped: until then its session is surely ours.
            self.daemon = find_daemon(self.token, self.uids, session=self.popen.pid)
        code = self.popen.poll()
        if code is None:
            return None
        if code == 0 and self.daemon is None and self.token:
            self.daemon = find_daemon(self.token, self.uids)
        if code == 0 and self.daemon is not None:
            self.daemonized = True
            if watcher is not None:
                watcher.follow_pid(self.daemon.pid)
            if self.on_daemon is not None:
                self.on_daemon(self.daemon.pid)
            return None
        return code


def _exited_zero_unreaped(pid: int) -> bool:
    """Whether child ``pid`` exited with code 0; it stays unreaped (a zombie holding its pid)."""
    if not hasattr(os, "waitid"):
        return False
    try:
        info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return False
    return info is not None and info.si_code == os.CLD_EXITED and info.si_status == 0


def _runs(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def find_daemon(
    token: str, uids: Collection[int] | None = None, *, session: int = 0
) -> psutil.Process | None:
    """The process that stands for a start whose launcher exited: of those carrying ``token``
    (and, given ``session``, the members of that session), the oldest one whose parent is not
    one of them (a daemon and its workers: the daemon).

    Pass ``session`` only while the launcher that leads it is an unreaped zombie: its pid, and so
    its session, cannot be anyone else's then. Members count even when they rewrote their
    environment (as servers that set their process title do).
    """
    pids = set(carriers(token, uids))
    if session > 0:
        pids.update(_session_members(session) - {session})
    tops: list[tuple[float, psutil.Process]] = []
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            if proc.ppid() not in pids and proc.status() != psutil.STATUS_ZOMBIE:
                tops.append((proc.create_time(), proc))
        except psutil.Error:
            continue
    return min(tops, key=lambda item: item[0])[1] if tops else None


def _session_members(sid: int) -> set[int]:
    members = set()
    for pid in all_pids():
        try:
            if os.getsid(pid) == sid:
                members.add(pid)
        except OSError:
            continue
    return members
