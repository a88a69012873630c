"""The process table as a stop sees it: each process's parent, and which carry a start's token.

Stopping a tree asks the same questions several times (who carries the token, who are the
descendants of what is signalled) while the tree forks and exits. A :class:`ProcessTable` reads
each process once: ``refresh()`` looks only at the pids it has not seen. That is sound because
a pid is not handed out again while the pids after it are free: Linux allocates them in
increasing order and wraps at ``pid_max`` (4 million by default), far beyond the few forks of
the milliseconds between two refreshes.

Handles for signalling are made by :meth:`ProcessTable.handle`, which checks again, after the
handle exists, that the pid is still the process the table describes (see ``termination``).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Collection, Iterable

import psutil

from xprocess.capabilities import HAVE_PROC
from xprocess.tokens import Verdict, carries_quickly, verify

__all__ = ["ProcessTable"]


def _all_pids() -> list[int]:
    if HAVE_PROC:
        return [int(entry) for entry in os.listdir("/proc") if entry.isdigit()]
    return psutil.pids()


def _parent_of(pid: int) -> int | None:
    """The parent pid of ``pid``; None if it is gone (or an exited, unreaped one)."""
    if HAVE_PROC:
        try:
            fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return None
        try:
            data = os.read(fd, 4096)
        except OSError:
            return None
        finally:
            os.close(fd)
        fields = data[data.rindex(b")") + 2 :].split()
        return None if fields[0] == b"Z" else int(fields[1])
    try:
        proc = psutil.Process(pid)
        with proc.oneshot():
            return None if proc.status() == psutil.STATUS_ZOMBIE else proc.ppid()
    except psutil.Error:
        return None


class ProcessTable:
    """Parents and token carriers of the live processes, read once per pid."""

    def __init__(self, token: str, uids: Collection[int], protected: Collection[int]) -> None:
        self.token = token
        self.uids = uids
        self.protected = protected
        self.parents: dict[int, int] = {}
        self.carriers: set[int] = set()
        self._seen: set[int] = set()

    def refresh(self) -> None:
        """Read the processes that appeared since the last refresh; forget those that left."""
        pids = _all_pids()
        listed = set(pids)
        for gone in self._seen - listed:
            self.parents.pop(gone, None)
            self.carriers.discard(gone)
        self._seen &= listed
        for pid in pids:
            if pid in self._seen:
                continue
            self._seen.add(pid)
            parent = _parent_of(pid)
            if parent is None:
                continue
            self.parents[pid] = parent
            if (
                self.token
                and pid not in self.protected
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

    def handle(self, pid: int, parent: int) -> psutil.Process | None:
        """A handle of ``pid`` if it is still the process the table knows: a carrier that
        still carries the token, a descendant still the child of ``parent``. The check comes
        after the handle is made: psutil refuses to signal a pid that changes hands after it."""
        with contextlib.suppress(psutil.Error):
            proc = psutil.Process(pid)
            if pid in self.carriers:
                verdict = verify(pid, self.token, self.uids, protected=self.protected)
                if verdict is Verdict.CARRIES:
                    return proc
            if parent and proc.ppid() == parent:
                return proc
        return None
