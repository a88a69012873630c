"""The process table as a stop sees it: each process's parent, and which carry a start's token.

Stopping a tree asks the same questions several times (who carries the token, who are the
descendants of what is signalled) while the tree forks and exits. A :class:`ProcessTable` reads
each process once: ``refresh()`` looks only at the pids it has not seen. That is sound because
a pid is not handed out again while the pids after it are free: Linux allocates them in
increasing order and wraps at ``pid_max`` (4 million by default), far beyond the few forks of
the milliseconds between two refreshes.

Only the processes created since the token was made are asked whether they carry it (see
``tokens.born_ticks``): on a machine of long-lived processes, a handful.

Handles for signalling are made by :meth:`ProcessTable.handle`, which checks again, after the
handle exists, that the pid is still the process the table describes (see ``termination``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Collection, Iterable

import psutil

from xprocess.capabilities import HAVE_PROC
from xprocess.procfs import all_pids, read_stat
from xprocess.tokens import Verdict, born_ticks, carries_quickly, verify

__all__ = ["ProcessTable"]


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
        self._seen: set[int] = set()
        self._born = born_ticks(token) if token else None

    def refresh(self) -> None:
        """Read the processes that appeared since the last refresh; forget those that left."""
        pids = all_pids()
        listed = set(pids)
        for gone in self._seen - listed:
            self.parents.pop(gone, None)
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
