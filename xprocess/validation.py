"""Checking what a starter gives, one value at a time, before anything is spawned.

Each check names the process and says what to do; a bad value is an ``InvalidStarterError``
(a ``ValueError``), a value of the wrong type in ``env`` or ``data`` a ``TypeError``, a missing
program an ``ExecutableNotFoundError`` (also a ``FileNotFoundError``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from xprocess.errors import ExecutableNotFoundError, InvalidStarterError

__all__ = [
    "check_executable",
    "check_json_data",
    "compile_pattern",
    "validate_argv",
    "validate_env",
    "validate_max_read_lines",
    "validate_timeout",
]


def validate_argv(name: str, raw: object) -> list[str]:
    __tracebackhide__ = True
    if isinstance(raw, (str, bytes)) or not isinstance(raw, Sequence):
        raise InvalidStarterError(
            f"cannot start {name!r}: args must be a list such as ['redis-server', '--port', 6380], "
            f"got {raw!r}" + (" (a string: split it into a list)" if isinstance(raw, str) else ""),
            name=name,
        )
    argv = [os.fspath(a) if isinstance(a, os.PathLike) else str(a) for a in raw]
    if not argv or not argv[0]:
        raise InvalidStarterError(
            f"cannot start {name!r}: args is empty; give the command to run, e.g. "
            "[sys.executable, 'server.py']",
            name=name,
        )
    return argv


def check_executable(
    name: str,
    argv: list[str],
    env: Mapping[str, str] | None,
    cwd: Path,
    popen_kwargs: Mapping[str, Any] | None = None,
) -> None:
    """Raise InvalidStarterError if ``argv[0]`` cannot be found or run.

    Skipped when ``popen_kwargs`` run something else (``shell``, ``executable``).
    """
    __tracebackhide__ = True
    popen_kwargs = popen_kwargs or {}
    if popen_kwargs.get("shell") or popen_kwargs.get("executable"):
        return
    cwd = Path(popen_kwargs.get("cwd") or cwd)
    program = argv[0]
    if os.sep in program or (os.altsep and os.altsep in program):
        path = Path(program) if os.path.isabs(program) else cwd / program
        if not path.is_file() or not os.access(path, os.X_OK):
            raise ExecutableNotFoundError(
                f"cannot start {name!r}: {program!r} is not an executable file"
                f" (looked at {path}); command: {' '.join(argv)}",
                name=name,
                filename=program,
            )
        return
    search = (env if env is not None else os.environ).get("PATH", os.defpath)
    if shutil.which(program, path=search) is None:
        raise ExecutableNotFoundError(
            f"cannot start {name!r}: executable {program!r} was not found on PATH "
            f"({search}); install it or give its full path. Command: {' '.join(argv)}",
            name=name,
            filename=program,
        )


def compile_pattern(name: str, pattern: object) -> re.Pattern[str] | None:
    __tracebackhide__ = True
    if pattern is None:
        return None
    if isinstance(pattern, re.Pattern):
        return pattern
    if not isinstance(pattern, str):
        raise InvalidStarterError(
            f"cannot start {name!r}: pattern must be a regex string, got {pattern!r}",
            name=name,
        )
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise InvalidStarterError(
            f"cannot start {name!r}: pattern {pattern!r} is not a valid regular expression: "
            f"{exc}; escape special characters with re.escape() if you meant them literally",
            name=name,
        ) from exc


def validate_env(name: str, env: object) -> dict[str, str] | None:
    __tracebackhide__ = True
    if env is None:
        return None
    if not isinstance(env, Mapping):
        raise InvalidStarterError(
            f"cannot start {name!r}: env must be a mapping of strings, got {env!r}", name=name
        )
    for key, value in env.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError(
                f"cannot start {name!r}: env must map strings to strings, but the value of "
                f"{key!r} is {value!r} ({type(value).__name__}); use str(...) or leave it out"
            )
    return dict(env)


def validate_timeout(name: str, timeout: object) -> float:
    __tracebackhide__ = True
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
        raise InvalidStarterError(
            f"cannot start {name!r}: timeout must be a number of seconds above 0, got {timeout!r}",
            name=name,
        )
    return float(timeout)


def validate_max_read_lines(name: str, value: object) -> int:
    __tracebackhide__ = True
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidStarterError(
            f"cannot start {name!r}: max_read_lines must be an integer of at least 1, "
            f"got {value!r}",
            name=name,
        )
    return value


def check_json_data(name: str, data: Mapping[str, Any]) -> dict[str, Any]:
    """Return ``data`` if every value is JSON-serialisable, else raise TypeError naming the key."""
    __tracebackhide__ = True
    for key, value in data.items():
        if not isinstance(key, str):
            raise TypeError(f"data of {name!r}: keys must be strings, got {key!r}")
        try:
            json.dumps(value)
        except (TypeError, ValueError) as exc:
            raise TypeError(
                f"data of {name!r}: the value of {key!r} ({type(value).__name__}) cannot be "
                f"stored as JSON: {exc}; store a str, number, bool, None, list or dict instead",
            ) from exc
    return data if isinstance(data, dict) else dict(data)
