"""The process table as a stop sees it: each process's parent, and which carry a start's token.

Stopping a tree asks the same questions several times (who carries the token, who are the
descendants of what is signalled) while the tree forks and exits. A :class:`ProcessTable` reads
each process once: ``refresh()`` looks only at the pids it has not seen. That is sound because
a pid is not handed out again while the pids after it are free: Linux allocates them in
increasing order and wraps at ``pid_max`` (4 million by default), far beyond the few forks of
the milliseconds between two refreshes.

Only the processes created since the token was made are asked whether they carry it (see
``tokens.born_ticks``): on a machine of long-lived processes, a handful.

Handles for signalling (:class:`Target`) are made by :meth:`ProcessTable.handle`, which checks
again, after the handle exists, that the pid is still the process the table describes. Where the
kernel has pidfds, a handle is one: a signal sent through it reaches that process or none, and
it turns readable when the process exits. Elsewhere it is a psutil handle, which refuses to
signal a pid that changed hands after it was made.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
from collections.abc import Collection, Iterable

import psutil

from xprocess.capabilities import HAVE_PIDFD, HAVE_PROC
from xprocess.liveness import HAVE_PROC_STAT, is_alive
from xprocess.procfs import all_pids, read_stat
from xprocess.tokens import Verdict, born_ticks, carries_quickly, verify

__all__ = ["ProcessTable", "Target", "reap_if_child"]

# Handles are pidfds, checked against /proc: both or neither.
_PIDFDS = HAVE_PIDFD and HAVE_PROC_STAT


def reap_if_child(pid: int) -> None:
    """Collect the exit status of ``pid`` if it is an exited child of ours, so it is no zombie."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


class Target:
    """A process to signal and wait for: a pidfd (``fd``) or a psutil handle (``proc``)."""

    __slots__ = ("fd", "pid", "proc")

    def __init__(self, pid: int, *, fd: int = -1, proc: psutil.Process | None = None) -> None:
        self.pid = pid
        self.fd = fd
        self.proc = proc

    @classmethod
    def of(cls, proc: psutil.Process) -> Target | None:
        """A target for ``proc``, a handle already checked to be ours; None if it is gone."""
        if not _PIDFDS:
            return cls(proc.pid, proc=proc)
        try:
            fd = os.pidfd_open(proc.pid)
        except OSError:
            return None
        # Checked after the pidfd is made: the process of the pid now is the one of ``proc``.
        if not is_alive(proc.pid, proc.create_time()):
            os.close(fd)
            return None
        return cls(proc.pid, fd=fd)

    def send(self, sig: int) -> None:
        if self.fd >= 0:
            with contextlib.suppress(OSError):
                signal.pidfd_send_signal(self.fd, sig)
        elif self.proc is not None:
            with contextlib.suppress(psutil.Error):
                self.proc.send_signal(sig)

    def gone(self) -> bool:
        """True once the process has exited. Reaps it if it is our child; a zombie counts as
        gone, since its parent (or an init that does not reap) may keep it indefinitely."""
        reap_if_child(self.pid)
        if self.fd >= 0:
            poller = select.poll()
            poller.register(self.fd, select.POLLIN)
            return bool(poller.poll(0))
        if self.proc is None:
            return True
        try:
            return not self.proc.is_running() or self.proc.status() == psutil.STATUS_ZOMBIE
        except psutil.Error:
            return True

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __repr__(self) -> str:
        return f"<Target pid={self.pid}>"


def _parent_of(pid: int) -> tuple[int | None, int | None]:
    """The parent pid of ``pid`` (None if it is gone, or an exited, unreaped one) and its start
    time in clock ticks since boot (None where /proc is not read)."""
    if HAVE_PROC:
        stat = read_stat(pid)
        if stat is None or stat.zombie:
            return None, None
        return stat.parent, stat.start_ticks
    try:
        proc = psutil.Process(pid)
        with proc.oneshot():
            return (None if proc.status() == psutil.STATUS_ZOMBIE else proc.ppid()), None
    except psutil.Error:
        return None, None


class ProcessTable:
    """Parents and token carriers of the live processes, read once per pid."""

    def __init__(self, token: str, uids: Collection[int], protected: Collection[int]) -> None:
        self.token = token
        self.uids = uids
        self.protected = protected
        self.parents: dict[int, int] = {}
        self.carriers: set[int] = set()
        self.starts: dict[int, int] = {}
        self._seen: set[int] = set()
        self._born = born_ticks(token) if token else None

    def refresh(self) -> None:
        """Read the processes that appeared since the last refresh; forget those that left."""
        pids = all_pids()
        listed = set(pids)
        for gone in self._seen - listed:
            self.parents.pop(gone, None)
            self.starts.pop(gone, None)
            self.carriers.discard(gone)
        self._seen &= listed
        for pid in pids:
            if pid in self._seen:
                continue
            self._seen.add(pid)
            parent, started = _parent_of(pid)
            if parent is None:
                continue
            self.parents[pid] = parent
            if started is not None:
                self.starts[pid] = started
            if (
                self.token
                and pid not in self.protected
                and (self._born is None or started is None or started >= self._born)
                and carries_quickly(pid, self.token, self.uids)
            ):
                self.carriers.add(pid)

    def children(self) -> dict[int, list[int]]:
        kids: dict[int, list[int]] = {}
        for pid, parent in self.parents.items():
            kids.setdefault(parent, []).append(pid)
        return kids

    def trees(self, roots: Iterable[int]) -> list[tuple[int, int]]:
        """``(pid, parent)`` of ``roots`` and their descendants, deepest first, without
        protected pids (a root's parent is 0)."""
        kids = self.children()
        depth: dict[int, tuple[int, int]] = {}
        stack = [(root, 0, 0) for root in roots]
        while stack:
            pid, parent, level = stack.pop()
            if pid in depth and depth[pid][0] >= level:
                continue
            depth[pid] = (level, parent)
            stack.extend((kid, pid, level + 1) for kid in kids.get(pid, ()))
        ordered = sorted(depth.items(), key=lambda item: -item[1][0])
        return [(pid, parent) for pid, (_, parent) in ordered if pid not in self.protected]

    def handle(self, pid: int, parent: int) -> Target | None:
        """A handle of ``pid`` if it is still the process the table knows: a carrier that
        still carries the token, a descendant still the child of ``parent``. The check comes
        after the handle is made, so the handle is of the process checked."""
        if _PIDFDS:
            return self._pidfd(pid, parent)
        with contextlib.suppress(psutil.Error):
            proc = psutil.Process(pid)
            if pid in self.carriers:
                verdict = verify(pid, self.token, self.uids, protected=self.protected)
                if verdict is Verdict.CARRIES:
                    return Target(pid, proc=proc)
            if parent and proc.ppid() == parent:
                return Target(pid, proc=proc)
        return None

    def _pidfd(self, pid: int, parent: int) -> Target | None:
        try:
            fd = os.pidfd_open(pid)
        except OSError:
            return None
        stat = read_stat(pid)
        # The same start time as when the table read it: the process the table describes.
        same = stat is not None and not stat.zombie and stat.start_ticks == self.starts.get(pid)
        if same and (
            (pid in self.carriers and carries_quickly(pid, self.token, self.uids))
            or (parent and stat is not None and stat.parent == parent)
        ):
            return Target(pid, fd=fd)
        os.close(fd)
        return None
