"""Waiting until a started process is ready, or failing as soon as it cannot be.

The process writes to its log file; readiness is read from there, never from a pipe (a pipe that
nobody drains blocks the child once it fills). Two things wake the waiter at once instead of a
fixed polling interval:

* new bytes in the log: inotify on Linux (``HAVE_INOTIFY``); elsewhere adaptive polling that
  starts at 1 ms and backs off to tens of milliseconds;
* the process exiting: a pidfd on Linux (``HAVE_PIDFD``), so an early exit is noticed within a
  millisecond rather than at the timeout; elsewhere ``Popen.poll`` on every wake-up.

A launcher that daemonizes (forks, and exits 0) is not a failed start while processes carrying its
token remain: the waiter follows the daemon it left, and reports its pid as the started process.
A log truncated while waiting (``copytruncate``) is read again from its start.
"""

from __future__ import annotations

import ctypes
import os
import select
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

from xprocess.daemons import StartedProcess
from xprocess.errors import PatternNotFoundError, ProcessExitedError, StartupTimeoutError
from xprocess.logs import log_size, read_tail
from xprocess.starter import LaunchPlan

__all__ = ["HAVE_INOTIFY", "HAVE_PIDFD", "LogWatcher", "wait_until_ready"]

_IN_MODIFY = 0x00000002
_FIRST_DELAY = 0.001
_MAX_DELAY_POLLING = 0.025
# With inotify and a pidfd every interesting event wakes us; the timeout is only a safety net.
_MAX_DELAY_EVENTS = 0.05
_CHUNK = 1 << 20
TAIL_LINES = 20


def _load_inotify() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.inotify_init1.argtypes = [ctypes.c_int]
        libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
        libc.inotify_rm_watch.argtypes = [ctypes.c_int, ctypes.c_int]
    except (OSError, AttributeError):
        return None
    return libc


_LIBC = _load_inotify()
HAVE_INOTIFY = _LIBC is not None
HAVE_PIDFD = hasattr(os, "pidfd_open")


_local = threading.local()


def _thread_inotify() -> int:
    """This thread's inotify instance (created on first use, kept open), or -1."""
    fd: int = getattr(_local, "inotify_fd", -2)
    if fd == -2:
        fd = _LIBC.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC) if _LIBC is not None else -1
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
        self.delay = _FIRST_DELAY
        self._max_delay = _MAX_DELAY_POLLING
        fd = _thread_inotify()
        if fd >= 0 and _LIBC is not None:
            wd = _LIBC.inotify_add_watch(fd, os.fsencode(logpath), _IN_MODIFY)
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
        if self._inotify_fd >= 0 and self._pidfd >= 0:
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

    def stop_following_log(self) -> None:
        """Wake only for the process's exit from now on (a startup_check is being retried: log
        lines must not make it run a thousand times a second)."""
        self._watched.discard(self._inotify_fd)
        if self._pidfd < 0:
            self._max_delay = _MAX_DELAY_POLLING

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
            self.delay = _FIRST_DELAY
            _drain(self._inotify_fd)
        if self._pidfd in ready:
            # The process has exited: stop watching it, so the next wait does not spin.
            self._watched.discard(self._pidfd)

    def close(self) -> None:
        # The inotify instance stays open for the next watcher: closing one waits for an RCU
        # grace period in the kernel, several milliseconds that ensure() would spend for nothing.
        if self._inotify_wd >= 0 and _LIBC is not None:
            _LIBC.inotify_rm_watch(self._inotify_fd, self._inotify_wd)
        if self._pidfd >= 0:
            os.close(self._pidfd)
        self._inotify_fd = self._inotify_wd = self._pidfd = -1
        self._watched.clear()

    def __enter__(self) -> LogWatcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _LineReader:
    """Reads the log from an offset, yielding complete non-blank lines as they appear.

    When the log shrinks below what was read (``copytruncate``), it starts again from byte 0.
    """

    def __init__(self, log: IO[bytes], offset: int) -> None:
        self._log = log
        self._partial = b""
        self.offset = offset
        self.truncated = False

    def new_lines(self) -> list[str]:
        if os.fstat(self._log.fileno()).st_size < self._log.tell():
            self._log.seek(0)
            self._partial = b""
            self.offset = 0
            self.truncated = True
        data = self._log.read(_CHUNK)
        if not data:
            return []
        data = self._partial + data
        cut = data.rfind(b"\n") + 1
        self._partial = data[cut:]
        if not cut:
            return []
        text = data[: cut - 1].decode("utf-8", "replace")
        # Lines end at "\n" only, as readline() sees them: a "\r" of a progress bar does not
        # make more lines out of one.
        return [line for line in text.split("\n") if line.strip()]

    @property
    def partial(self) -> str:
        return self._partial.decode("utf-8", "replace")


def _describe(plan: LaunchPlan) -> str:
    return " ".join(plan.argv)


_REDIRECTS = ("stdout", "stderr")


def _tail_text(logpath: Path, offset: int, plan: LaunchPlan | None = None) -> str:
    """The last lines of the log since ``offset``, or what the log holds when it has no lines."""
    lines = read_tail(logpath, offset, TAIL_LINES)
    redirected = [k for k in _REDIRECTS if plan is not None and k in plan.popen_kwargs]
    note = (
        f"\n  note: popen_kwargs redirect {' and '.join(redirected)} away from the log, so the "
        "log holds only what is not redirected"
        if redirected
        else ""
    )
    if lines:
        return "\n".join(f"    {line}" for line in lines) + note
    size = log_size(logpath)
    written = size - offset if size >= offset else size
    if written <= 0:
        return "    (the process wrote nothing to its log)" + note
    return (
        f"    (the log holds {written} bytes from this start, but no complete non-blank line "
        "in its last 64 KiB)" + note
    )


def _exited(
    started: StartedProcess,
    plan: LaunchPlan,
    logpath: Path,
    offset: int,
    watcher: LogWatcher | None = None,
) -> ProcessExitedError | None:
    code = started.exit_code(watcher)
    if code is None:
        return None
    what = (
        "exited with code 0 (it daemonized), and every process it left exited too,"
        if started.daemonized
        else f"exited with code {code}"
    )
    hint = (
        "\n  No process it left carries its token (in its environment or its inherited mark"
        " file) or stays in its session. A daemon that leaves the session, rewrites its"
        " environment and closes the descriptors it inherited cannot be followed: run the"
        " server in the foreground instead."
        if code == 0 and not started.daemonized
        else ""
    )
    return ProcessExitedError(
        f"{plan.name!r} {what} before it was ready.\n"
        f"  command: {_describe(plan)}\n  log: {logpath}\n"
        f"  last lines of its log:\n{_tail_text(logpath, offset, plan)}{hint}",
        name=plan.name,
    )


def _timed_out(
    plan: LaunchPlan, logpath: Path, offset: int, waiting_for: str, cause: BaseException | None
) -> StartupTimeoutError:
    reason = f"\n  the last startup_check raised: {cause!r}" if cause is not None else ""
    return StartupTimeoutError(
        f"{plan.name!r} was not ready within {plan.timeout:g} s: {waiting_for}.{reason}\n"
        f"  command: {_describe(plan)}\n  log: {logpath}\n"
        f"  last lines of its log:\n{_tail_text(logpath, offset, plan)}\n"
        "  Raise the starter's timeout if it needs longer, or check the pattern against the log.",
        name=plan.name,
    )


def wait_until_ready(
    plan: LaunchPlan,
    popen: subprocess.Popen[bytes] | None,
    logpath: Path,
    offset: int,
    *,
    token: str = "",
    on_daemon: Callable[[int], None] | None = None,
) -> int | None:
    """Return once ``plan``'s process is ready; raise as soon as it cannot become ready.

    Reads the log from ``offset`` (where this start's output begins). Raises
    ProcessExitedError when the process exits first, PatternNotFoundError when ``max_read_lines``
    lines pass without a match, StartupTimeoutError when ``plan.timeout`` passes. With the start's
    ``token``, a launcher that exits 0 leaving processes that carry it is followed to its daemon,
    and ``on_daemon(pid)`` is told each time the started process becomes another one.

    Returns the pid that stands for the started process: ``popen.pid``, or the daemon's when the
    launcher daemonized (also when it exits 0 right after its ready line).
    """
    deadline = time.monotonic() + plan.timeout
    pid = popen.pid if popen is not None else None
    started = StartedProcess(popen, token, on_daemon)
    with LogWatcher(logpath, pid) as watcher, open(logpath, "rb") as log:
        log.seek(offset)
        if plan.pattern is not None:
            _wait_for_pattern(plan, started, logpath, offset, log, watcher, deadline)
        checks: list[Callable[[], object]] = []
        if plan.check is not None:
            checks.append(plan.check)
        if plan.log_reader is not None:
            checks.append(_reader_check(plan.log_reader, logpath, offset))
        if checks:
            watcher.stop_following_log()
        for check in checks:
            watcher.delay = _FIRST_DELAY
            _wait_for_check(plan, check, started, logpath, offset, watcher, deadline)
    started.exit_code()  # a launcher that exited 0 just after its ready line: its daemon counts
    return started.pid


def _reader_check(
    reader: Callable[[IO[str]], object], logpath: Path, offset: int
) -> Callable[[], object]:
    def check() -> object:
        with open(logpath, encoding="utf-8", errors="replace") as log:
            log.seek(offset)
            return reader(log)

    return check


def _wait_for_pattern(
    plan: LaunchPlan,
    started: StartedProcess,
    logpath: Path,
    offset: int,
    log: IO[bytes],
    watcher: LogWatcher,
    deadline: float,
) -> None:
    assert plan.pattern is not None
    search = plan.pattern.search
    reader = _LineReader(log, offset)
    seen = 0
    exit_error: ProcessExitedError | None = None
    while True:
        lines = reader.new_lines()
        for line in lines:
            seen += 1
            if search(line):
                return
            if seen >= plan.max_read_lines:
                raise PatternNotFoundError(
                    f"{plan.name!r}: pattern {plan.pattern.pattern!r} was not found in the first "
                    f"{plan.max_read_lines} non-blank lines of its log (max_read_lines).\n"
                    f"  command: {_describe(plan)}\n  log: {logpath}\n"
                    f"  last lines of its log:\n{_tail_text(logpath, reader.offset, plan)}\n"
                    "  Fix the pattern, or raise max_read_lines if the process prints more "
                    "before it is ready.",
                    name=plan.name,
                )
        if lines:
            continue
        # A ready line may lack its newline yet (a prompt, a buffered last line).
        if reader.partial.strip() and search(reader.partial):
            return
        if exit_error is not None:
            raise exit_error
        exit_error = _exited(started, plan, logpath, reader.offset, watcher)
        if exit_error is not None:
            continue  # read once more what it wrote before it exited
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            seen_note = f"pattern {plan.pattern.pattern!r} not seen in {seen} lines"
            if reader.truncated:
                seen_note += " (the log was truncated meanwhile and read again from its start)"
            raise _timed_out(plan, logpath, reader.offset, seen_note, None)
        watcher.wait(remaining)


def _wait_for_check(
    plan: LaunchPlan,
    check: Callable[[], object],
    started: StartedProcess,
    logpath: Path,
    offset: int,
    watcher: LogWatcher,
    deadline: float,
) -> None:
    last_error: Exception | None = None
    while True:
        try:
            if check():
                return
        except Exception as exc:
            last_error = exc
        exited = _exited(started, plan, logpath, offset, watcher)
        if exited is not None:
            raise exited from last_error
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise _timed_out(
                plan, logpath, offset, "startup_check did not return True", last_error
            ) from last_error
        watcher.wait(remaining)
