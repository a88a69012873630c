"""Spawning a process: its own session, its control dir as cwd, its output into its log."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Mapping
from pathlib import Path

from xprocess.errors import StartupError
from xprocess.layout import open_regular_file
from xprocess.starter import LaunchPlan
from xprocess.tokens import MARK_FILE, TOKEN_VAR
from xprocess.validation import check_executable

__all__ = ["child_environment", "make_mark", "open_log", "spawn"]


def child_environment(env: Mapping[str, str] | None) -> dict[str, str]:
    """The environment of a child: ``env`` (or this process's), with ``PYTHONUNBUFFERED=1``
    unless it sets that itself.

    A Python program buffers its output when it goes to a file, as it does here: without this,
    its ready line waits in the buffer and the start times out.
    """
    child = dict(os.environ if env is None else env)
    child.setdefault("PYTHONUNBUFFERED", "1")
    return child


def open_log(logpath: Path, name: str, *, truncate: bool) -> int:
    """Open the log for appending (emptied first with ``truncate``), never through a symlink."""
    return open_regular_file(
        logpath,
        os.O_WRONLY | os.O_CREAT | os.O_APPEND | (os.O_TRUNC if truncate else 0),
        name=name,
        what="the log",
        remedy="Remove it (the next start makes a real one).",
    )


def make_mark(controldir: Path, token: str) -> int:
    """A fresh mark file holding ``token``, opened read-only for the child to inherit.

    The previous start's mark is unlinked first: processes of that start keep theirs open.
    """
    path = controldir / MARK_FILE
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(path, flags, 0o600)
    try:
        os.write(fd, token.encode())
    finally:
        os.close(fd)
    return os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)


def spawn(
    plan: LaunchPlan, controldir: Path, logpath: Path, *, persist_logs: bool, token: str = ""
) -> tuple[subprocess.Popen[bytes], int]:
    """Start ``plan``'s command; return the Popen and the log offset where its output begins.

    The child gets its own session (so Ctrl-C in the terminal does not reach it), no stdin,
    stdout and stderr appended to ``logpath`` (truncated first unless ``persist_logs``), the
    environment of :func:`child_environment`, and ``token`` in its environment as
    ``XPROCESS_TOKEN`` and in an inherited descriptor of its mark file (see ``xprocess.tokens``),
    both of which its descendants inherit.
    """
    __tracebackhide__ = True
    check_executable(plan.name, plan.argv, plan.env, controldir, plan.popen_kwargs)
    fd = open_log(logpath, plan.name, truncate=not persist_logs)
    try:
        mark = make_mark(controldir, token) if token else -1
    except BaseException:
        os.close(fd)
        raise
    with open(fd, "ab", buffering=0) as log, contextlib.ExitStack() as stack:
        if mark >= 0:
            stack.callback(os.close, mark)
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
        if mark >= 0:
            kwargs["pass_fds"] = (*tuple(kwargs.get("pass_fds") or ()), mark)  # type: ignore[arg-type]
        if token:
            env = kwargs.get("env")
            kwargs["env"] = {**(os.environ if env is None else env), TOKEN_VAR: token}  # type: ignore[dict-item]
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
