"""Waiting until a started process is ready, or failing as soon as it cannot be.

The process writes to its log file; readiness is read from there, never from a pipe (a pipe that
nobody drains blocks the child once it fills). Two things wake the waiter at once instead of a
fixed polling interval:

* new bytes in the log: inotify on Linux (``HAVE_INOTIFY``); elsewhere adaptive polling that
  starts at 1 ms and backs off to tens of milliseconds;
* the process exiting: a pidfd on Linux (``HAVE_PIDFD``), so an early exit is noticed within a
  millisecond rather than at the timeout; elsewhere ``Popen.poll`` on every wake-up.
"""

from __future__ import annotations

import ctypes
import functools
import os
import queue
import re
import select
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

from xprocess.errors import (
    PatternNotFoundError,
    ProcessExitedError,
    StartupTimeoutError,
    XProcessError,
)
from xprocess.logs import read_tail
from xprocess.probes import BoundProbe, ProbeFailed
from xprocess.starter import LaunchPlan

__all__ = [
    "HAVE_INOTIFY",
    "HAVE_PIDFD",
    "SLOW_START_NOTICE",
    "LogWatcher",
    "is_not_ready_error",
    "is_programming_error",
    "wait_until_ready",
]

_IN_MODIFY = 0x00000002
_FIRST_DELAY = 0.001
_MAX_DELAY_POLLING = 0.025
# With inotify and a pidfd every interesting event wakes us; the timeout is only a safety net.
_MAX_DELAY_EVENTS = 0.05
_CHUNK = 1 << 20
TAIL_LINES = 20
# After this many seconds without readiness, say what is being waited for (a silent 20 s start
# looks like a hang).
SLOW_START_NOTICE = 2.0
# How often a check that has not returned yet is looked at: for an exit, the deadline, a notice.
_CHECK_WAKE = 0.05

Report = Callable[[str], None]


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
    """Reads the log from an offset, yielding complete non-blank lines as they appear."""

    def __init__(self, log: IO[bytes]) -> None:
        self._log = log
        self._partial = b""

    def new_lines(self) -> list[str]:
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


def _tail_text(logpath: Path, offset: int) -> str:
    lines = read_tail(logpath, offset, TAIL_LINES)
    if not lines:
        return "(the process wrote nothing to its log)"
    return "\n".join(f"    {line}" for line in lines)


_PYTHON_NAME = re.compile(r"^(python|pypy)[\d.]*$")


def _is_python(popen: subprocess.Popen[bytes] | None, plan: LaunchPlan) -> bool:
    names = [os.path.basename(plan.argv[0])]
    if popen is not None:
        try:
            import psutil

            names.append(psutil.Process(popen.pid).name())
        except Exception:  # gone, or no permission: the command line is all there is
            pass
    return any(_PYTHON_NAME.match(name) for name in names)


def _buffering_hint(
    plan: LaunchPlan, popen: subprocess.Popen[bytes] | None, logpath: Path, offset: int
) -> str:
    """Why a Python process that wrote nothing may look silent: its output is in its buffer."""
    if read_tail(logpath, offset, 1) or not _is_python(popen, plan):
        return ""
    env = plan.env if plan.env is not None else os.environ
    if env.get("PYTHONUNBUFFERED"):
        how = (
            "PYTHONUNBUFFERED is set, so the likely cause is a buffer of the program's own (a "
            "file it opened, a logging handler): flush it after writing the ready line"
        )
    else:
        how = (
            "its output is most likely waiting in its buffer (Python buffers output to a file, "
            "and the starter's env sets PYTHONUNBUFFERED to an empty value): run it with -u, "
            "set PYTHONUNBUFFERED=1, or flush after printing"
        )
    return f"\n  It is a Python interpreter that wrote nothing; {how}."


def _exited(
    popen: subprocess.Popen[bytes] | None, plan: LaunchPlan, logpath: Path, offset: int
) -> ProcessExitedError | None:
    if popen is None or popen.poll() is None:
        return None
    return ProcessExitedError(
        f"{plan.name!r} exited with code {popen.returncode} before it was ready.\n"
        f"  command: {_describe(plan)}\n  log: {logpath}\n"
        f"  last lines of its log:\n{_tail_text(logpath, offset)}",
        name=plan.name,
    )


def _timed_out(
    plan: LaunchPlan,
    popen: subprocess.Popen[bytes] | None,
    logpath: Path,
    offset: int,
    waiting_for: str,
    advice: str,
) -> StartupTimeoutError:
    return StartupTimeoutError(
        f"{plan.name!r} was not ready within {plan.timeout:g} s: {waiting_for}.\n"
        f"  command: {_describe(plan)}\n  log: {logpath}\n"
        f"  last lines of its log:\n{_tail_text(logpath, offset)}"
        f"{_buffering_hint(plan, popen, logpath, offset)}\n  {advice}",
        name=plan.name,
    )


class _Progress:
    """Says once what a slow start waits for, and then how long it took to become ready."""

    def __init__(self, plan: LaunchPlan, report: Report | None) -> None:
        self._plan = plan
        self._report = report
        self._started = time.monotonic()
        self._shown = False
        self.waiting_for = ""

    def tick(self) -> None:
        if self._shown or self._report is None:
            return
        elapsed = time.monotonic() - self._started
        if elapsed >= SLOW_START_NOTICE:
            self._shown = True
            self._report(
                f"xprocess: waiting for {self._plan.name!r} to be ready ({self.waiting_for}, "
                f"{elapsed:.0f} s of {self._plan.timeout:g} s)…"
            )

    def ready(self) -> None:
        if self._shown and self._report is not None:
            elapsed = time.monotonic() - self._started
            self._report(f"xprocess: {self._plan.name!r} is ready after {elapsed:.1f} s")


def wait_until_ready(
    plan: LaunchPlan,
    popen: subprocess.Popen[bytes] | None,
    logpath: Path,
    offset: int,
    report: Report | None = None,
) -> None:
    """Return once ``plan``'s process is ready; raise as soon as it cannot become ready.

    Reads the log from ``offset`` (where this start's output begins). Raises
    ProcessExitedError when the process exits first, PatternNotFoundError when ``max_read_lines``
    lines pass without a match, StartupTimeoutError when ``plan.timeout`` passes. A start that
    takes longer than ``SLOW_START_NOTICE`` seconds is announced through ``report``, and so is
    its readiness then.
    """
    __tracebackhide__ = True
    deadline = time.monotonic() + plan.timeout
    pid = popen.pid if popen is not None else None
    progress = _Progress(plan, report)
    with LogWatcher(logpath, pid) as watcher, open(logpath, "rb") as log:
        log.seek(offset)
        if plan.pattern is not None:
            progress.waiting_for = f"pattern {plan.pattern.pattern!r}"
            _wait_for_pattern(plan, popen, logpath, offset, log, watcher, deadline, progress)
        checks: list[Callable[[], object]] = []
        if plan.check is not None:
            checks.append(plan.check)
        if plan.log_reader is not None:
            checks.append(_reader_check(plan.log_reader, logpath, offset))
        if checks:
            watcher.stop_following_log()
        for check in checks:
            watcher.delay = _FIRST_DELAY
            progress.waiting_for = _check_name(check)
            _wait_for_check(plan, check, popen, logpath, offset, watcher, deadline, progress)
    progress.ready()


def _reader_check(
    reader: Callable[[IO[str]], object], logpath: Path, offset: int
) -> Callable[[], object]:
    def check() -> object:
        with open(logpath, encoding="utf-8", errors="replace") as log:
            log.seek(offset)
            return reader(log)

    return check


def _check_name(check: Callable[[], object]) -> str:
    if isinstance(check, BoundProbe):
        return f"startup_check {check.description}"
    return "startup_check"


def _wait_for_pattern(
    plan: LaunchPlan,
    popen: subprocess.Popen[bytes] | None,
    logpath: Path,
    offset: int,
    log: IO[bytes],
    watcher: LogWatcher,
    deadline: float,
    progress: _Progress,
) -> None:
    __tracebackhide__ = True
    assert plan.pattern is not None
    search = plan.pattern.search
    reader = _LineReader(log)
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
                    f"  last lines of its log:\n{_tail_text(logpath, offset)}\n"
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
        exit_error = _exited(popen, plan, logpath, offset)
        if exit_error is not None:
            continue  # read once more what it wrote before it exited
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise _timed_out(
                plan,
                popen,
                logpath,
                offset,
                f"pattern {plan.pattern.pattern!r} not seen",
                "Raise the starter's timeout if it needs longer, or check the pattern against "
                "the log.",
            )
        progress.tick()
        watcher.wait(remaining)


# Exceptions from a startup_check that are bugs in the check, not a server that is not ready:
# retrying them until the timeout only hides the traceback.
_PROGRAMMING_ERRORS = (KeyError, AttributeError, NameError, TypeError, ImportError, XProcessError)
# Words in the class names of client libraries' "cannot reach the server" errors (psycopg's
# OperationalError, redis's ConnectionError and BusyLoadingError, pymongo's AutoReconnect...),
# matched by name so that none of those libraries needs to be imported.
_NOT_READY_WORDS = (
    "connect",
    "operational",
    "interface",
    "timeout",
    "unavailable",
    "refused",
    "reconnect",
    "notready",
    "loading",
    "disconnect",
)


def is_not_ready_error(exc: BaseException) -> bool:
    """Whether ``exc`` from a startup_check says the server cannot be reached (yet)."""
    if isinstance(exc, (OSError, ProbeFailed)):
        return True
    http_client = sys.modules.get("http.client")  # if a check used it, it is imported
    if http_client is not None and isinstance(exc, http_client.HTTPException):
        return True
    return any(
        word in cls.__name__.lower() for cls in type(exc).__mro__ for word in _NOT_READY_WORDS
    )


def is_programming_error(exc: BaseException) -> bool:
    """Whether ``exc`` from a startup_check is a bug in the check, to be raised at once.

    KeyError, AttributeError, NameError, TypeError, ImportError and xprocess's own errors are,
    unless the class is a client library's connection error (by its name). Every other exception
    (AssertionError and ValueError included) means "not ready yet".
    """
    return isinstance(exc, _PROGRAMMING_ERRORS) and not is_not_ready_error(exc)


class _Job:
    """One call of a check, run by a worker thread; ``done`` is set when it has returned."""

    def __init__(self, check: Callable[[], object]) -> None:
        self.check = check
        self.done = threading.Event()
        self.result: object = None
        self.error: BaseException | None = None

    def run(self) -> None:
        __tracebackhide__ = True
        try:
            self.result = self.check()
        except BaseException as exc:  # handed to the waiting thread, which decides
            self.error = exc
        finally:
            self.done.set()


class _CheckWorker:
    """A daemon thread that runs checks, so that one that blocks can be abandoned.

    One per waiting thread, kept between starts: handing a check to a running thread costs
    microseconds, starting a thread for each call would cost more.
    """

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        thread = threading.Thread(target=self._serve, name="xprocess-startup-check", daemon=True)
        thread.start()

    def _serve(self) -> None:
        while (job := self._jobs.get()) is not None:
            job.run()

    def submit(self, check: Callable[[], object]) -> _Job:
        job = _Job(check)
        self._jobs.put(job)
        return job

    def abandon(self) -> None:
        """Let the thread end once its stuck check returns, if it ever does."""
        self._jobs.put(None)


def _worker() -> _CheckWorker:
    worker: _CheckWorker | None = getattr(_local, "check_worker", None)
    if worker is None:
        worker = _local.check_worker = _CheckWorker()
    return worker


def _abandon_worker() -> None:
    worker: _CheckWorker | None = getattr(_local, "check_worker", None)
    if worker is not None:
        worker.abandon()
        _local.check_worker = None


def _as_cause(exc: BaseException | None) -> BaseException | None:
    # A refused connection's traceback (socket internals, a client library) says nothing the
    # message does not: chain the exception without it, so the failure fits on a screen.
    if exc is not None and is_not_ready_error(exc):
        return exc.with_traceback(None)
    return exc


def _wait_for_check(
    plan: LaunchPlan,
    check: Callable[[], object],
    popen: subprocess.Popen[bytes] | None,
    logpath: Path,
    offset: int,
    watcher: LogWatcher,
    deadline: float,
    progress: _Progress,
) -> None:
    __tracebackhide__ = True
    last_error: BaseException | None = None
    name = progress.waiting_for
    while True:
        remaining = deadline - time.monotonic()
        if isinstance(check, BoundProbe):
            # A probe's every socket operation has a timeout of at most what is left: it cannot
            # hang, so it runs here, without the cost of handing it to another thread.
            job = _Job(functools.partial(check.attempt, remaining))
            job.run()
        else:
            job = _worker().submit(check)
            _await_check(job, plan, popen, logpath, offset, deadline, progress, last_error)
        if job.error is None and job.result:
            return
        if job.error is not None:
            if not isinstance(job.error, Exception) or is_programming_error(job.error):
                error = job.error
                if hasattr(error, "add_note"):
                    error.add_note(
                        f"xprocess: raised by the startup_check of {plan.name!r}, which is a bug "
                        "in the check rather than a server that is not ready yet; the process "
                        "was stopped."
                    )
                raise error
            last_error = job.error
        exited = _exited(popen, plan, logpath, offset)
        if exited is not None:
            raise exited from _as_cause(last_error)
        remaining = deadline - time.monotonic()
        if remaining > 0:
            progress.tick()
            watcher.wait(remaining)
            if deadline - time.monotonic() > 0:
                continue
        if isinstance(last_error, ProbeFailed):
            what = f"{name} did not pass; last failure: {last_error}"
        elif last_error is not None:
            what = f"{name} did not return True; the last call raised {last_error!r}"
        else:
            what = f"{name} did not return True"
        raise _timed_out(
            plan,
            popen,
            logpath,
            offset,
            what,
            "Raise the starter's timeout if it needs longer, or check what the check "
            "connects to against the log.",
        ) from _as_cause(last_error)


def _await_check(
    job: _Job,
    plan: LaunchPlan,
    popen: subprocess.Popen[bytes] | None,
    logpath: Path,
    offset: int,
    deadline: float,
    progress: _Progress,
    last_error: BaseException | None,
) -> None:
    """Wait for ``job`` to return; raise if the process exits, or the check blocks."""
    __tracebackhide__ = True
    while not job.done.wait(max(0.0, min(_CHECK_WAKE, deadline - time.monotonic()))):
        exited = _exited(popen, plan, logpath, offset)
        if exited is not None:
            _abandon_worker()
            raise exited from _as_cause(last_error)
        if time.monotonic() < deadline:
            progress.tick()
            continue
        # A call that began just before the deadline has a moment to finish: only one that
        # is still running after it blocks.
        if job.done.wait(_CHECK_WAKE):
            return
        _abandon_worker()
        raise _timed_out(
            plan,
            popen,
            logpath,
            offset,
            f"{progress.waiting_for} was still running at the deadline and was abandoned (it "
            "is left in a daemon thread)",
            "The check blocks: give every socket or client it uses a timeout shorter than the "
            "starter's timeout (socket.settimeout, connect_timeout=...), or use "
            "xprocess.probes.",
        ) from _as_cause(last_error)
