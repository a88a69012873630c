"""One lock per process name, held across check, start, readiness and record.

This is what makes ``ensure`` start a process exactly once when several xdist workers, or several
pytest runs, ask for it at the same moment. The lock is an OS file lock (filelock): when the
process holding it dies, even by SIGKILL, the OS releases it.
"""

from __future__ import annotations

from pathlib import Path
from types import TracebackType

import filelock

from xprocess.errors import StartupTimeoutError

__all__ = ["NameLock", "held_elsewhere"]


class NameLock:
    """Exclusive lock on one process name; raises StartupTimeoutError if not had in time."""

    def __init__(self, path: Path, name: str, timeout: float, *, what: str = "process") -> None:
        self.name = name
        self.what = what
        self.path = path
        self.timeout = timeout
        self._lock = filelock.FileLock(str(path), timeout=timeout)
        self._held = False

    def acquire(self) -> None:
        """Take the lock (``with`` does it too); StartupTimeoutError if not had in time."""
        __tracebackhide__ = True
        if self._held:
            return
        try:
            self._lock.acquire()
        except filelock.Timeout as exc:
            raise StartupTimeoutError(
                f"waited {self.timeout:g} s for the lock on {self.what} {self.name!r} "
                f"({self.path}): another pytest process (an xdist worker or a concurrent run) "
                "still holds it while starting, computing or stopping it. Raise the timeout if "
                "that takes longer.",
                name=self.name,
            ) from exc
        self._held = True

    def __enter__(self) -> NameLock:
        __tracebackhide__ = True
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._held = False
        self._lock.release()


def held_elsewhere(path: Path) -> bool:
    """Whether another process holds the lock at ``path`` now (a start or stop in progress).

    Takes the lock for an instant if it is free; a missing lock file is a free lock.
    """
    if not path.is_file():
        return False
    lock = filelock.FileLock(str(path), timeout=0, is_singleton=False)
    try:
        lock.acquire()
    except filelock.Timeout:
        return True
    except OSError:
        return False  # cannot even open it (a read-only root): nobody could be starting there
    lock.release()
    return False
