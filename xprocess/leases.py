"""Leases: one of a process's numbered slots (a Redis database) for one live worker at a time.

Two runs on one project share a server; what each worker of each run may use alone is a slot
leased to it: an OS file lock per slot under the records root, held for as long as the worker
needs the slot. The OS frees the lock when the worker dies, even by SIGKILL, so a dead worker's
slot is free without anyone cleaning up.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from xprocess.errors import XProcessError
from xprocess.layout import Layout
from xprocess.locking import try_lock

__all__ = ["Lease", "NoFreeSlotError", "lease_slot", "slot_order"]


class NoFreeSlotError(XProcessError, RuntimeError):
    """Every slot of the process is leased to a live worker."""


class Lease:
    """Slot ``slot`` of process ``name``, this process's until :meth:`release`."""

    def __init__(self, name: str, slot: int, fd: int | None) -> None:
        self.name = name
        self.slot = slot
        self._fd = fd  # the lock file's descriptor, holding its lock

    @property
    def held(self) -> bool:
        """Whether the slot is held by a lock (False where the records root is read-only)."""
        return self._fd is not None

    def release(self) -> None:
        """Give the slot back; releasing twice does nothing."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def __repr__(self) -> str:
        return f"<Lease {self.name!r} slot {self.slot}>"


def slot_order(preferred: int, count: int) -> list[int]:
    """The slots to try, ``preferred`` first, then the ones after it, wrapping around."""
    start = preferred % count
    return [(start + offset) % count for offset in range(count)]


def lease_slot(root: Path, name: str, count: int, preferred: int = 0) -> Lease:
    """Lease a free slot among ``count`` of process ``name``, ``preferred`` if it is free.

    Raises NoFreeSlotError when every slot is leased. Where the records root cannot be written
    (a read-only checkout), nobody can hold a lease: ``preferred`` is given, unheld.
    """
    layout = Layout(root)
    for slot in slot_order(preferred, count):
        path = layout.lease_lock(name, slot)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # A lock of its own per lease: a second lease in this same process is refused too.
            fd = try_lock(path, name)
        except OSError as exc:
            if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
                return Lease(name, preferred % count, None)
            raise
        if fd is None:
            continue
        return Lease(name, slot, fd)
    raise NoFreeSlotError(
        f"all {count} slots of {name!r} are leased to live workers of this run and of other runs "
        "on this project",
        name=name,
    )
