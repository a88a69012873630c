"""Sleeping until a log grows or a process exits, whichever comes first.

On Linux an inotify watch of the log (``HAVE_INOTIFY``) and a pidfd of the process
(``HAVE_PIDFD``) wake the sleeper at once; elsewhere it polls, starting at 1 ms and backing off to
10 ms (the constants are those of ``xprocess.capabilities``).
"""

from __future__ import annotations

import os
import select
import threading
import time
from pathlib import Path

from xprocess.capabilities import HAVE_INOTIFY, HAVE_PIDFD, LIBC

__all__ = ["FIRST_DELAY", "HAVE_INOTIFY", "HAVE_PIDFD", "LogWatcher"]

_IN_MODIFY = 0x00000002
FIRST_DELAY = 0.001
_MAX_DELAY_POLLING = 0.025
# Without inotify the log itself is polled: often enough to stay within 10 ms of a ready line.
_MAX_DELAY_LOG_POLLING = 0.01
# With inotify and a pidfd every interesting event wakes us; the timeout is only a safety net.
_MAX_DELAY_EVENTS = 0.05


_local = threading.local()


def _thread_inotify() -> int:
    """This thread's inotify instance (created on first use, kept open), or -1."""
    fd: int = getattr(_local, "inotify_fd", -2)
    if fd == -2:
        fd = LIBC.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC) if LIBC is not None else -1
        _local.inotify_fd = fd
    return fd


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 65536):
            pass
    except BlockingIOError:
        pass


class LogWatcher:
    """Sleeps until the log grows, the process exits, or a delay passes; whichever comes first."""

    def __init__(self, logpath: Path, pid: int | None) -> None:
        self._inotify_fd = -1
        self._inotify_wd = -1
        self._pidfd = -1
        self._watched: set[int] = set()
        self.delay = FIRST_DELAY
        self._max_delay = _MAX_DELAY_POLLING
        self._logpath = os.fsencode(logpath)
        self._paused = False
        fd = _thread_inotify()
        if fd >= 0 and LIBC is not None:
            wd = LIBC.inotify_add_watch(fd, self._logpath, _IN_MODIFY)
            if wd >= 0:
                self._inotify_fd, self._inotify_wd = fd, wd
                self._watched.add(fd)
                _drain(fd)  # events of watches removed earlier
        if HAVE_PIDFD and pid:
            try:
                self._pidfd = os.pidfd_open(pid)
                self._watched.add(self._pidfd)
            except OSError:
                self._pidfd = -1
        if self._inotify_fd < 0:
            self._max_delay = _MAX_DELAY_LOG_POLLING
        elif self._pidfd >= 0:
            self._max_delay = _MAX_DELAY_EVENTS

    def follow_pid(self, pid: int) -> None:
        """Wake when ``pid`` exits (the daemon a launcher left), instead of the launcher."""
        if self._pidfd >= 0:
            self._watched.discard(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = -1
        if HAVE_PIDFD:
            try:
                self._pidfd = os.pidfd_open(pid)
                self._watched.add(self._pidfd)
            except OSError:
                self._pidfd = -1

    def pause_log(self) -> None:
        """Stop watching the log for a while: a process printing a lot pays for every event a
        watch makes, and its writes are read in batches meanwhile (see ``resume_log``)."""
        if self._inotify_wd >= 0 and LIBC is not None and not self._paused:
            LIBC.inotify_rm_watch(self._inotify_fd, self._inotify_wd)
            self._watched.discard(self._inotify_fd)
            self._inotify_wd = -1
            self._paused = True

    def resume_log(self) -> bool:
        """Watch the log again after ``pause_log``; True if it was paused, in which case read
        the log once more before waiting (a write may have come while it was not watched)."""
        if not self._paused:
            return False
        self._paused = False
        if LIBC is not None and self._inotify_fd >= 0:
            wd = LIBC.inotify_add_watch(self._inotify_fd, self._logpath, _IN_MODIFY)
            if wd >= 0:
                self._inotify_wd = wd
                self._watched.add(self._inotify_fd)
                _drain(self._inotify_fd)
        return True

    def stop_following_log(self) -> None:
        """Wake only for the process's exit from now on (a startup_check is being retried: log
        lines must not make it run a thousand times a second)."""
        self._watched.discard(self._inotify_fd)
        self._max_delay = _MAX_DELAY_EVENTS if self._pidfd >= 0 else _MAX_DELAY_POLLING

    def _ready(self, timeout: float) -> set[int]:
        # poll(), unlike select(), takes descriptors above 1023, which a busy test process has.
        poller = select.poll()
        for fd in self._watched:
            poller.register(fd, select.POLLIN)
        return {fd for fd, _ in poller.poll(timeout * 1000)}

    def wait(self, remaining: float) -> None:
        """Sleep at most ``remaining`` seconds, waking early on log growth or process exit."""
        timeout = max(0.0, min(self.delay, remaining))
        self.delay = min(self.delay * 1.5, self._max_delay)
        if not self._watched:
            time.sleep(timeout)
            return
        ready = self._ready(timeout)
        if self._inotify_fd in ready:
            self.delay = FIRST_DELAY
            _drain(self._inotify_fd)
        if self._pidfd in ready:
            # The process has exited: stop watching it, so the next wait does not spin.
            self._watched.discard(self._pidfd)

    def close(self) -> None:
        # The inotify instance stays open for the next watcher: closing one waits for an RCU
        # grace period in the kernel, several milliseconds that ensure() would spend for nothing.
        if self._inotify_wd >= 0 and LIBC is not None:
            LIBC.inotify_rm_watch(self._inotify_fd, self._inotify_wd)
        if self._pidfd >= 0:
            os.close(self._pidfd)
        self._inotify_fd = self._inotify_wd = self._pidfd = -1
        self._watched.clear()

    def __enter__(self) -> LogWatcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
