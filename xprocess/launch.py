"""Spawning a process: its own session, its control dir as cwd, its output into its log."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from pathlib import Path

from xprocess.errors import StartupError
from xprocess.starter import LaunchPlan, check_executable

__all__ = ["child_environment", "spawn"]


def child_environment(env: Mapping[str, str] | None) -> dict[str, str]:
    """The environment of a child: ``env`` (or this process's), with ``PYTHONUNBUFFERED=1``
    unless it sets that itself.

    A Python program buffers its output when it goes to a file, as it does here: without this,
    its ready line waits in the buffer and the start times out.
    """
    child = dict(os.environ if env is None else env)
    child.setdefault("PYTHONUNBUFFERED", "1")
    return child


def spawn(
    plan: LaunchPlan, controldir: Path, logpath: Path, *, persist_logs: bool
) -> tuple[subprocess.Popen[bytes], int]:
    """Start ``plan``'s command; return the Popen and the log offset where its output begins.

    The child gets its own session (so Ctrl-C in the terminal does not reach it), no stdin, and
    stdout and stderr appended to ``logpath`` (truncated first unless ``persist_logs``), and
    the environment of :func:`child_environment`.
    """
    __tracebackhide__ = True
    check_executable(plan.name, plan.argv, plan.env, controldir, plan.popen_kwargs)
    with open(logpath, "ab" if persist_logs else "wb", buffering=0) as log:
        offset = os.fstat(log.fileno()).st_size
        kwargs: dict[str, object] = {
            "cwd": str(controldir),
            "env": child_environment(plan.env),
            "stdin": subprocess.DEVNULL,
            "stdout": log,
            "stderr": subprocess.STDOUT,
            "start_new_session": True,
            "close_fds": True,
        }
        kwargs.update(plan.popen_kwargs)
        try:
            popen: subprocess.Popen[bytes] = subprocess.Popen(plan.argv, **kwargs)  # type: ignore[call-overload]
        except Exception as exc:  # OSError, or a bad popen_kwargs value (an unknown user...)
            detail = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
            raise StartupError(
                f"cannot start {plan.name!r}: {detail}\n  command: {' '.join(plan.argv)}\n"
                f"  cwd: {controldir}",
                name=plan.name,
            ) from exc
    return popen, offset
