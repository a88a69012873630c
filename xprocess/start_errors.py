"""The error of a start that cannot become ready, worded for people.

Each says which process, what was run, where its log is and what its last lines are, then what
to try: the process exited first (``exited_error``), its pattern was not among the lines it may
read (``pattern_not_found_error``), or the deadline passed (``timed_out_error``, with a hint when
a silent Python process likely holds its output in a buffer). :mod:`xprocess.readiness` raises
them.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from xprocess.daemons import StartedProcess
from xprocess.errors import PatternNotFoundError, ProcessExitedError, StartupTimeoutError
from xprocess.launch import child_environment
from xprocess.logs import log_size, read_tail
from xprocess.logwatch import LogWatcher
from xprocess.starter import LaunchPlan

__all__ = [
    "TAIL_LINES",
    "counted",
    "exited_error",
    "pattern_not_found_error",
    "timed_out_error",
]

TAIL_LINES = 20


def _command(plan: LaunchPlan) -> str:
    return " ".join(plan.argv)


_REDIRECTS = ("stdout", "stderr")


def counted(count: int, noun: str) -> str:
    """``1 line``, ``2 lines``: a count that reads right for every number."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


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
        f"    (the log holds {counted(written, 'byte')} from this start, but no complete "
        "non-blank line in its last 64 KiB)" + note
    )


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
    if log_size(logpath) > offset or not _is_python(popen, plan):
        return ""
    env = plan.popen_kwargs.get("env") or child_environment(plan.env)
    if env.get("PYTHONUNBUFFERED"):
        how = (
            "PYTHONUNBUFFERED is set, so the likely cause is a buffer of the program's own (a "
            "file it opened, a logging handler): flush it after writing the ready line"
        )
    else:
        how = (
            "its output is most likely waiting in its buffer (Python buffers output to a file, "
            "and its environment sets PYTHONUNBUFFERED to an empty value): run it with -u, "
            "set PYTHONUNBUFFERED=1, or flush after printing"
        )
    return f"\n  It is a Python interpreter that wrote nothing; {how}."


def exited_error(
    started: StartedProcess,
    plan: LaunchPlan,
    logpath: Path,
    offset: int,
    watcher: LogWatcher | None = None,
) -> ProcessExitedError | None:
    """The error of a started process that exited before it was ready; None while it runs."""
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
        f"  command: {_command(plan)}\n  log: {logpath}\n"
        f"  last lines of its log:\n{_tail_text(logpath, offset, plan)}{hint}",
        name=plan.name,
    )


def timed_out_error(
    plan: LaunchPlan,
    popen: subprocess.Popen[bytes] | None,
    logpath: Path,
    offset: int,
    waiting_for: str,
    advice: str,
) -> StartupTimeoutError:
    """The error of a start not ready by its deadline: ``waiting_for`` what, and ``advice``."""
    return StartupTimeoutError(
        f"{plan.name!r} was not ready within {plan.timeout:g} s: {waiting_for}.\n"
        f"  command: {_command(plan)}\n  log: {logpath}\n"
        f"  last lines of its log:\n{_tail_text(logpath, offset, plan)}"
        f"{_buffering_hint(plan, popen, logpath, offset)}\n  {advice}",
        name=plan.name,
    )


def pattern_not_found_error(plan: LaunchPlan, logpath: Path, offset: int) -> PatternNotFoundError:
    """The error of a start whose pattern did not match within ``max_read_lines`` lines."""
    assert plan.pattern is not None
    first = (
        "the first non-blank line"
        if plan.max_read_lines == 1
        else f"the first {plan.max_read_lines} non-blank lines"
    )
    return PatternNotFoundError(
        f"{plan.name!r}: pattern {plan.pattern.pattern!r} was not found in {first} "
        "of its log (max_read_lines).\n"
        f"  command: {_command(plan)}\n  log: {logpath}\n"
        f"  last lines of its log:\n{_tail_text(logpath, offset, plan)}\n"
        "  Fix the pattern, or raise max_read_lines if the process prints more "
        "before it is ready.",
        name=plan.name,
    )
