"""What this platform offers xprocess, decided once at import.

Each fast path is guarded by one constant here instead of a check of its own, so the modules
that use them read as "with inotify, else polling":

* ``HAVE_PROC_STAT``: process start times in clock ticks since boot, from ``/proc/<pid>/stat``,
  and the kernel's boot id (Linux);
* ``HAVE_PROC``: a ``/proc`` to list every pid from (Linux);
* ``HAVE_INOTIFY``: the log is watched by inotify instead of polled (Linux);
* ``HAVE_PIDFD``: a process exit wakes the waiter through a pidfd (Linux 5.3+, Python 3.9+);
* ``SUPPORTED``: POSIX sessions and signals, which xprocess needs; False on Windows.

``XPROCESS_PORTABLE=1`` in the environment turns the four Linux paths off, so the fallbacks that
macOS and the BSDs run (adaptive polling, ``Popen.poll``, psutil's create times and process list)
can be tested on Linux.
"""

from __future__ import annotations

import ctypes
import os
import sys
import time

from xprocess.errors import UnsupportedPlatformError

__all__ = [
    "HAVE_INOTIFY",
    "HAVE_PIDFD",
    "HAVE_PROC",
    "HAVE_PROC_STAT",
    "IS_WINDOWS",
    "LIBC",
    "PORTABLE",
    "SUPPORTED",
    "inotify_watch",
    "require_supported",
]

PORTABLE_VARIABLE = "XPROCESS_PORTABLE"
PORTABLE = os.environ.get(PORTABLE_VARIABLE, "").strip().lower() not in ("", "0", "false", "no")

IS_WINDOWS = sys.platform == "win32"
SUPPORTED = not IS_WINDOWS and hasattr(os, "setsid") and hasattr(os, "killpg")

_LINUX = sys.platform.startswith("linux") and not PORTABLE

HAVE_PROC = _LINUX and os.path.isdir("/proc/self")
HAVE_PROC_STAT = HAVE_PROC and hasattr(time, "CLOCK_BOOTTIME")
HAVE_PIDFD = _LINUX and hasattr(os, "pidfd_open")


def _load_inotify() -> ctypes.CDLL | None:
    if not _LINUX:
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.inotify_init1.argtypes = [ctypes.c_int]
        libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
        libc.inotify_rm_watch.argtypes = [ctypes.c_int, ctypes.c_int]
    except (OSError, AttributeError):
        return None
    return libc


LIBC = _load_inotify()
"""The C library with its inotify functions typed, when ``HAVE_INOTIFY``."""
HAVE_INOTIFY = LIBC is not None


def inotify_watch(path: str | os.PathLike[str], mask: int) -> int:
    """A non-blocking inotify descriptor watching ``path`` for the events of ``mask``, or -1
    without inotify or when ``path`` cannot be watched. Closing it ends the watch."""
    if LIBC is None:
        return -1
    fd = int(LIBC.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC))
    if fd < 0:
        return -1
    if LIBC.inotify_add_watch(fd, os.fsencode(path), mask) < 0:
        os.close(fd)
        return -1
    return fd


def require_supported(what: str, name: str | None = None) -> None:
    """Raise ``UnsupportedPlatformError`` if ``what`` (say "start 'redis'") cannot be done here.

    Reads ``SUPPORTED`` when called, so a test can pretend to be on Windows by patching it.
    """
    if not SUPPORTED:
        raise UnsupportedPlatformError(
            f"xprocess cannot {what}: Windows is not supported, since xprocess needs POSIX "
            "sessions and signals (run the tests under Linux, macOS or WSL).",
            name=name,
        )
