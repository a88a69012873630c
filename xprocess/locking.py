"""One lock per process name, held across check, start, readiness and record.

This is what makes ``ensure`` start a process exactly once when several xdist workers, or several
pytest runs, ask for it at the same moment. The lock is an OS file lock (``flock``): when the
process holding it dies, even by SIGKILL, the OS releases it.

The lock file is opened here, not by a library: never through a symlink (``O_NOFOLLOW``), never
truncated, and only if it is a regular file, so a link planted at ``.locks/<name>.lock`` cannot
make xprocess write to (or empty) a file outside the records root.
"""

from __future__ import annotations

import contextlib
import os
import select
import time
from pathlib import Path
from types import TracebackType

from xprocess.errors import StartupTimeoutError, UnsafePathError
from xprocess.layout import LOCKS_DIR, open_regular_file

__all__ = ["NameLock", "flock", "held_elsewhere", "try_lock"]

# How often a waiter tries the lock again: from 1 ms, backing off to this. With inotify a
# holder's release (closing the lock file) wakes it at once, and these are a safety net.
_FIRST_POLL = 0.001
_MAX_POLL = 0.05
_IN_CLOSE = 0x00000008 | 0x00000010  # IN_CLOSE_WRITE | IN_CLOSE_NOWRITE


def flock(fd: int, *, exclusive: bool = True, wait: bool = True) -> None:
    """``flock(2)`` on ``fd``; BlockingIOError when ``wait`` is False and another holds it.

    fcntl is imported here, not with the module, so that xprocess imports where it does not
    exist (Windows, where it refuses to start with one sentence instead of crashing).
    """
    import fcntl

    operation = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
    fcntl.flock(fd, operation if wait else operation | fcntl.LOCK_NB)


def _open_lock_file(path: Path, name: str) -> int:
    # The dirs up to the locks dir (``.locks``, ``.locks/values``): made by xprocess, never links.
    dirs = [path.parent] if path.parent.name == LOCKS_DIR else [path.parent, path.parent.parent]
    with_link = next((d for d in dirs if d.is_symlink()), None)
    if with_link is not None:
        raise UnsafePathError(
            f"the lock dir {with_link} is a symlink (to {os.readlink(with_link)}); xprocess "
            "does not write through symlinks under its records root. Remove it (the next lock "
            "makes a real one).",
            name=name,
        )
    return open_regular_file(
        path,
        os.O_RDWR | os.O_CREAT | os.O_NONBLOCK,
        name=name,
        what="the lock file",
        remedy="Remove it (the next lock makes a real one).",
    )


class NameLock:
    """Exclusive lock on one process name; raises StartupTimeoutError if not had in time.

    ``exclusive=False``: a shared lock, held beside other shared ones (readers of what the
    exclusive holder makes).
    """

    def __init__(
        self,
        path: Path,
        name: str,
        timeout: float,
        *,
        what: str = "process",
        exclusive: bool = True,
    ) -> None:
        self.name = name
        self.what = what
        self.path = path
        self.timeout = timeout
        self.exclusive = exclusive
        self._fd = -1

    def acquire(self) -> None:
        """Take the lock (``with`` does it too); StartupTimeoutError if not had in time."""
        __tracebackhide__ = True
        if self._fd >= 0:
            return
        fd = _open_lock_file(self.path, self.name)
        deadline = time.monotonic() + self.timeout
        delay = _FIRST_POLL
        closes: int | None = None  # an inotify watch of the lock file's closes, once waiting
        try:
            while True:
                try:
                    flock(fd, exclusive=self.exclusive, wait=False)
                    break
                except BlockingIOError:
                    pass
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise StartupTimeoutError(
                        f"waited {self.timeout:g} s for the lock on {self.what} {self.name!r} "
                        f"({self.path}): another pytest process (an xdist worker or a "
                        "concurrent run) still holds it while starting, computing or stopping "
                        "it. Raise the timeout if that takes longer.",
                        name=self.name,
                    )
                if closes is None:
                    # Watched before the next try: a release in between is then seen by the
                    # try, one after it wakes the wait.
                    closes = _watch_closes(self.path)
                    continue
                _wait_for_close(closes, min(delay, remaining))
                delay = min(delay * 2, _MAX_POLL)
        except BaseException:
            os.close(fd)
            raise
        finally:
            if closes is not None and closes >= 0:
                os.close(closes)
        self._fd = fd

    def release(self) -> None:
        """Let go of the lock (closing the file releases it)."""
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)

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
        self.release()


def _watch_closes(path: Path) -> int:
    """An inotify descriptor that wakes when a process closes ``path`` (a holder letting go of
    its lock, also by dying), or -1: the waiter then polls."""
    from xprocess.capabilities import inotify_watch

    return inotify_watch(path, _IN_CLOSE)


def _wait_for_close(closes: int, timeout: float) -> None:
    """Sleep ``timeout`` seconds, or less when ``closes`` (if >= 0) reports a close."""
    if closes < 0:
        time.sleep(timeout)
        return
    poller = select.poll()
    poller.register(closes, select.POLLIN)
    if poller.poll(timeout * 1000):
        with contextlib.suppress(BlockingIOError):
            os.read(closes, 65536)  # the events themselves say nothing more


def try_lock(path: Path, name: str, *, exclusive: bool = True) -> int | None:
    """Take the lock at ``path`` if it is free now (``exclusive=False``: not held exclusively):
    its open descriptor (closing it lets go), or None when another process holds it. Opened as
    :class:`NameLock` opens its file (never through a symlink, never truncated); OSError when it
    cannot be opened."""
    fd = _open_lock_file(path, name)
    try:
        flock(fd, exclusive=exclusive, wait=False)
    except BlockingIOError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    return fd


def held_elsewhere(path: Path, name: str = "") -> bool:
    """Whether another process holds the lock at ``path`` now (a start or stop in progress).

    Takes the lock for an instant if it is free; a missing lock file is a free lock.
    """
    if not path.is_file():
        return False
    try:
        fd = try_lock(path, name or path.stem)
    except OSError:
        return False  # cannot even open it (a read-only root): nobody could be starting there
    if fd is None:
        return True
    os.close(fd)
    return False
