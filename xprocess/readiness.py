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

(:mod:`xprocess.logwatch` does the sleeping, :mod:`xprocess.checks` calls a ``startup_check``,
:mod:`xprocess.start_errors` words the error of a start that cannot become ready.)
"""

from __future__ import annotations

import functools
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

from xprocess.checks import Call, abandon_worker, as_cause, is_programming_error, submit
from xprocess.daemons import StartedProcess
from xprocess.errors import ProcessExitedError
from xprocess.logwatch import FIRST_DELAY, HAVE_INOTIFY, HAVE_PIDFD, LogWatcher
from xprocess.probes import BoundProbe, ProbeFailed
from xprocess.start_errors import (
    counted,
    exited_error,
    pattern_not_found_error,
    timed_out_error,
)
from xprocess.starter import LaunchPlan

__all__ = [
    "HAVE_INOTIFY",
    "HAVE_PIDFD",
    "SLOW_START_NOTICE",
    "LogWatcher",
    "wait_until_ready",
]

_CHUNK = 1 << 20
# How long to let a streaming log gather before reading it again (see _wait_for_pattern).
_GATHER = 0.0005
# After this many seconds without readiness, say what is being waited for (a silent 20 s start
# looks like a hang).
SLOW_START_NOTICE = 2.0
# How often a check that has not returned yet is looked at: for an exit, the deadline, a notice.
_CHECK_WAKE = 0.05

Report = Callable[[str], None]


class _LineReader:
    """Reads the log from an offset, yielding complete non-blank lines as they appear.

    When the log shrinks below what was read (``copytruncate``), it starts again from byte 0.
    """

    def __init__(self, log: IO[bytes], offset: int) -> None:
        self._log = log
        self._partial = b""
        self.offset = offset
        self.truncated = False
        # The last read got less than a chunk: the process is likely writing still.
        self.more_coming = False

    def new_lines(self) -> list[str]:
        data = self._log.read(_CHUNK)
        self.more_coming = 0 < len(data) < _CHUNK
        if not data:
            # Nothing past where we are: either nothing new, or the log was emptied under us.
            if os.fstat(self._log.fileno()).st_size >= self._log.tell():
                return []
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
    *,
    token: str = "",
    on_daemon: Callable[[int], None] | None = None,
) -> int | None:
    """Return once ``plan``'s process is ready; raise as soon as it cannot become ready.

    Reads the log from ``offset`` (where this start's output begins). Raises
    ProcessExitedError when the process exits first, PatternNotFoundError when ``max_read_lines``
    lines pass without a match, StartupTimeoutError when ``plan.timeout`` passes. A start that
    takes longer than ``SLOW_START_NOTICE`` seconds is announced through ``report``, and so is
    its readiness then. With the start's ``token``, a launcher that exits 0 leaving processes
    that carry it is followed to its daemon, and ``on_daemon(pid)`` is told each time the
    started process becomes another one.

    Returns the pid that stands for the started process: ``popen.pid``, or the daemon's when the
    launcher daemonized (also when it exits 0 right after its ready line).
    """
    __tracebackhide__ = True
    deadline = time.monotonic() + plan.timeout
    pid = popen.pid if popen is not None else None
    progress = _Progress(plan, report)
    started = StartedProcess(popen, token, on_daemon)
    with LogWatcher(logpath, pid) as watcher, open(logpath, "rb") as log:
        log.seek(offset)
        if plan.pattern is not None:
            progress.waiting_for = f"pattern {plan.pattern.pattern!r}"
            _wait_for_pattern(plan, started, logpath, offset, log, watcher, deadline, progress)
        checks: list[Callable[[], object]] = []
        if plan.check is not None:
            checks.append(plan.check)
        if plan.log_reader is not None:
            checks.append(_reader_check(plan.log_reader, logpath, offset))
        if checks:
            watcher.stop_following_log()
        for check in checks:
            watcher.delay = FIRST_DELAY
            progress.waiting_for = _check_name(check)
            _wait_for_check(plan, check, started, logpath, offset, watcher, deadline, progress)
    started.exit_code()  # a launcher that exited 0 just after its ready line: its daemon counts
    progress.ready()
    return started.pid


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
    started: StartedProcess,
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
                raise pattern_not_found_error(plan, logpath, reader.offset)
        if lines:
            if reader.more_coming:
                # A process printing a lot writes line by line: reading each line as it comes
                # costs a read per line, and a watched log an event per write. Unwatched for a
                # moment, the log gathers a batch (a ready line waits no longer than that).
                watcher.pause_log()
                time.sleep(_GATHER)
            continue
        if watcher.resume_log():
            continue  # read once more: a write may have come while the log was not watched
        # A ready line may lack its newline yet (a prompt, a buffered last line).
        if reader.partial.strip() and search(reader.partial):
            return
        if exit_error is not None:
            raise exit_error
        exit_error = exited_error(started, plan, logpath, reader.offset, watcher)
        if exit_error is not None:
            continue  # read once more what it wrote before it exited
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            seen_note = f"pattern {plan.pattern.pattern!r} not seen in {counted(seen, 'line')}"
            if reader.truncated:
                seen_note += " (the log was truncated meanwhile and read again from its start)"
            raise timed_out_error(
                plan,
                started.popen,
                logpath,
                reader.offset,
                seen_note,
                "Raise the starter's timeout if it needs longer, or check the pattern against "
                "the log.",
            )
        progress.tick()
        watcher.wait(remaining)


def _wait_for_check(
    plan: LaunchPlan,
    check: Callable[[], object],
    started: StartedProcess,
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
            job = Call(functools.partial(check.attempt, remaining))
            job.run()
        else:
            job = submit(check)
            _await_check(job, plan, started, logpath, offset, deadline, progress, last_error)
        if job.error is None and job.result:
            # A check counts only while what was started lives: one that passes against
            # another program (ours died on "address already in use") is no readiness.
            exited = exited_error(started, plan, logpath, offset, watcher)
            if exited is None:
                return
            raise exited
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
        exited = exited_error(started, plan, logpath, offset, watcher)
        if exited is not None:
            raise exited from as_cause(last_error)
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
        raise timed_out_error(
            plan,
            started.popen,
            logpath,
            offset,
            what,
            "Raise the starter's timeout if it needs longer, or check what the check "
            "connects to against the log.",
        ) from as_cause(last_error)


def _await_check(
    job: Call,
    plan: LaunchPlan,
    started: StartedProcess,
    logpath: Path,
    offset: int,
    deadline: float,
    progress: _Progress,
    last_error: BaseException | None,
) -> None:
    """Wait for ``job`` to return; raise if the process exits, or the check blocks."""
    __tracebackhide__ = True
    while not job.done.wait(max(0.0, min(_CHECK_WAKE, deadline - time.monotonic()))):
        exited = exited_error(started, plan, logpath, offset)
        if exited is not None:
            abandon_worker()
            raise exited from as_cause(last_error)
        if time.monotonic() < deadline:
            progress.tick()
            continue
        # A call that began just before the deadline has a moment to finish: only one that
        # is still running after it blocks.
        if job.done.wait(_CHECK_WAKE):
            return
        abandon_worker()
        raise timed_out_error(
            plan,
            started.popen,
            logpath,
            offset,
            f"{progress.waiting_for} was still running at the deadline and was abandoned (it "
            "is left in a daemon thread)",
            "The check blocks: give every socket or client it uses a timeout shorter than the "
            "starter's timeout (socket.settimeout, connect_timeout=...), or use "
            "xprocess.probes.",
        ) from as_cause(last_error)
