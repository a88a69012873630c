"""What to start and how to tell it is ready: ``ProcessStarter`` and its validation.

A starter is turned into a :class:`LaunchPlan` before anything is spawned; every mistake a user can
make in a starter is reported then, as a ``ValueError`` (or ``TypeError``) naming the process.
"""

from __future__ import annotations

import inspect
import json
import os
import re
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from xprocess.errors import InvalidStarterError
from xprocess.probes import BoundProbe

__all__ = ["LaunchPlan", "ProcessStarter", "make_plan", "starter_label"]

DEFAULT_TIMEOUT = 120.0
DEFAULT_MAX_READ_LINES = 50


class ProcessStarter:
    """Describe a process to start: subclass it and set ``args`` and ``pattern``.

    Example::

        class Server(ProcessStarter):
            pattern = "Serving HTTP on"
            def args(self):
                self.data["port"] = free_port()
                return [sys.executable, "-u", "-m", "http.server", self.data["port"]]

    Attributes (class attributes, properties or, for ``args``, a method):

    ``args``
        The command: a sequence whose items are passed through ``str()``. Required.
    ``pattern``
        A regular expression searched in each line the process writes; the process is ready once
        a line matches. Optional when ``startup_check`` is overridden; with both, both must pass.
    ``startup_check``
        A method returning True once the process answers, or a probe:
        ``startup_check = probes.tcp("{port}")`` (see :mod:`xprocess.probes`).
    ``env``
        The environment of the process (None: inherit this one).
    ``timeout``
        Seconds to wait for readiness before ``StartupTimeoutError`` (default 120).
    ``max_read_lines``
        Non-blank lines of log to read for ``pattern`` before ``PatternNotFoundError`` (default 50).
    ``popen_kwargs``
        Extra keyword arguments for ``subprocess.Popen``, e.g. ``{"user": "postgres"}``.
    ``terminate_on_interrupt``
        Terminate the process when the run is interrupted (Ctrl-C, internal error).
    ``terminate_at_end``
        Terminate the process when the whole run ends, after the last xdist worker.
    ``data``
        A dict recorded with the process when it starts, readable by every worker through
        ``xprocess.getinfo(name).data``: put what you choose at start (a port, a path) here.
    """

    env: Mapping[str, str] | None = None
    timeout: float = DEFAULT_TIMEOUT
    max_read_lines: int = DEFAULT_MAX_READ_LINES
    popen_kwargs: Mapping[str, Any] = {}
    terminate_on_interrupt: bool = False
    terminate_at_end: bool = False
    pattern: str | re.Pattern[str] | None = None
    args: Any = None

    def __init__(self, control_dir: Path | str, process: Any = None) -> None:
        self.control_dir = Path(control_dir)
        self.process = process
        self.data: dict[str, Any] = {}

    def startup_check(self) -> bool:
        """Override to tell whether the process answers; return True once it does.

        Called repeatedly, in a thread of its own, until it returns a true value or the timeout
        passes (a call still running then is abandoned). An exception such as
        ``ConnectionRefusedError`` means "not ready yet", and the last one is chained to the
        timeout; ``KeyError``, ``AttributeError``, ``NameError``, ``TypeError`` and
        ``ImportError`` are bugs in the check and are raised at once. A probe from
        :mod:`xprocess.probes` can be assigned instead: ``startup_check = probes.tcp("{port}")``.
        """
        return True


@dataclass
class LaunchPlan:
    """A validated starter: everything needed to spawn a process and wait for it."""

    name: str
    argv: list[str]
    env: dict[str, str] | None
    pattern: re.Pattern[str] | None
    check: Callable[[], object] | None
    timeout: float
    max_read_lines: int
    popen_kwargs: dict[str, Any]
    terminate_on_interrupt: bool
    terminate_at_end: bool
    data: dict[str, Any] = field(default_factory=dict)
    starter: str = ""
    log_reader: Callable[[IO[str]], object] | None = None


def starter_label(starter: object) -> str:
    """A stable label for a starter class or prepare function, kept in the record."""
    module = getattr(starter, "__module__", "") or ""
    qualname = getattr(starter, "__qualname__", "") or type(starter).__qualname__
    return f"{module}.{qualname}"


def class_attribute(starter: object, attr: str, default: Any) -> Any:
    """Read a plain class attribute of a starter class without instantiating it."""
    if isinstance(starter, type):
        value = inspect.getattr_static(starter, attr, default)
        if not isinstance(value, (property, staticmethod, classmethod)) and not callable(value):
            return value
    return default


def make_plan(name: str, starter: Any, controldir: Path, xprocess: Any) -> LaunchPlan:
    """Build and validate the launch plan of ``name`` from a starter class or prepare function."""
    __tracebackhide__ = True
    if isinstance(starter, type):
        return _plan_from_starter(name, starter(controldir, xprocess))
    if isinstance(starter, ProcessStarter):
        return _plan_from_starter(name, starter)
    if callable(starter):
        if _takes_two_arguments(starter):
            # A factory called as pytest-xprocess 1.0 called starters: (control_dir, xprocess),
            # e.g. functools.partial(Server, port=5); it returns a starter, or the old tuple.
            made = starter(controldir, xprocess)
            if isinstance(made, ProcessStarter):
                return _plan_from_starter(name, made)
            return _plan_from_prepared(name, starter, made)
        return _plan_from_preparefunc(name, starter, controldir)
    raise InvalidStarterError(
        f"cannot start {name!r}: the starter must be a ProcessStarter subclass or a function "
        f"preparefunc(cwd) returning (pattern, args[, env]); got {starter!r}",
        name=name,
    )


def _plan_from_starter(name: str, starter: Any) -> LaunchPlan:
    __tracebackhide__ = True
    raw_args = starter.args
    if callable(raw_args):
        raw_args = raw_args()
    argv = _validate_argv(name, raw_args)
    pattern = _compile_pattern(name, getattr(starter, "pattern", None))
    check: Callable[[], object] | None = None
    overridden = type(starter).startup_check is not ProcessStarter.startup_check
    if overridden or not isinstance(starter, ProcessStarter):
        check = getattr(starter, "startup_check", None)
        if check is not None and not callable(check):
            raise InvalidStarterError(
                f"cannot start {name!r}: startup_check must be a method returning True when the "
                f"process answers, got {check!r}",
                name=name,
            )
        if isinstance(check, BoundProbe):
            check.validate(name)  # its templates are filled from data, which args() has set
    if pattern is None and check is None:
        raise InvalidStarterError(
            f"cannot start {name!r}: the starter has neither a 'pattern' nor a 'startup_check'; "
            "set pattern to a regex of a line the process prints when ready, or override "
            "startup_check()",
            name=name,
        )
    data = getattr(starter, "data", None)
    return LaunchPlan(
        name=name,
        argv=argv,
        env=_validate_env(name, getattr(starter, "env", None)),
        pattern=pattern,
        check=check,
        timeout=_validate_timeout(name, getattr(starter, "timeout", DEFAULT_TIMEOUT)),
        max_read_lines=_validate_max_read_lines(
            name, getattr(starter, "max_read_lines", DEFAULT_MAX_READ_LINES)
        ),
        popen_kwargs=dict(getattr(starter, "popen_kwargs", None) or {}),
        terminate_on_interrupt=bool(getattr(starter, "terminate_on_interrupt", False)),
        terminate_at_end=bool(getattr(starter, "terminate_at_end", False)),
        data=check_json_data(name, data if isinstance(data, dict) else {}),
        starter=starter_label(type(starter)),
    )


def _takes_two_arguments(function: Callable[..., Any]) -> bool:
    try:
        inspect.signature(function).bind(None, None)
    except TypeError:
        return False
    except ValueError:  # no signature to inspect (some builtins)
        return False
    return True


def _plan_from_preparefunc(name: str, prepare: Callable[..., Any], cwd: Path) -> LaunchPlan:
    __tracebackhide__ = True
    return _plan_from_prepared(name, prepare, prepare(cwd))


def _plan_from_prepared(name: str, prepare: Callable[..., Any], result: Any) -> LaunchPlan:
    __tracebackhide__ = True
    if not isinstance(result, (tuple, list)) or len(result) not in (2, 3):
        raise InvalidStarterError(
            f"cannot start {name!r}: preparefunc {starter_label(prepare)} must return "
            f"(pattern, args) or (pattern, args, env), got {result!r}",
            name=name,
        )
    wait, raw_args, *rest = result
    env = rest[0] if rest else None
    pattern = None if callable(wait) else _compile_pattern(name, wait)
    if pattern is None and not callable(wait):
        raise InvalidStarterError(
            f"cannot start {name!r}: preparefunc must return a pattern (a regex string) or a "
            f"callable as its first item, got {wait!r}",
            name=name,
        )
    return LaunchPlan(
        name=name,
        argv=_validate_argv(name, raw_args),
        env=_validate_env(name, env),
        pattern=pattern,
        check=None,
        timeout=DEFAULT_TIMEOUT,
        max_read_lines=DEFAULT_MAX_READ_LINES,
        popen_kwargs={},
        terminate_on_interrupt=False,
        terminate_at_end=False,
        starter=starter_label(prepare),
        log_reader=_legacy_reader(wait) if callable(wait) else None,
    )


def _legacy_reader(wait: Callable[..., object]) -> Callable[[IO[str]], object]:
    """Adapt an old-style readiness callable: it takes the log file, or nothing."""
    try:
        takes_file = bool(inspect.signature(wait).parameters)
    except (TypeError, ValueError):
        takes_file = True
    return wait if takes_file else (lambda log: wait())


def _validate_argv(name: str, raw: object) -> list[str]:
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
            raise InvalidStarterError(
                f"cannot start {name!r}: {program!r} is not an executable file"
                f" (looked at {path}); command: {' '.join(argv)}",
                name=name,
            )
        return
    search = (env if env is not None else os.environ).get("PATH", os.defpath)
    if shutil.which(program, path=search) is None:
        raise InvalidStarterError(
            f"cannot start {name!r}: executable {program!r} was not found on PATH "
            f"({search}); install it or give its full path. Command: {' '.join(argv)}",
            name=name,
        )


def _compile_pattern(name: str, pattern: object) -> re.Pattern[str] | None:
    __tracebackhide__ = True
    if pattern is None:
        return None
    if isinstance(pattern, re.Pattern):
        return pattern
    if not isinstance(pattern, str) or not pattern:
        raise InvalidStarterError(
            f"cannot start {name!r}: pattern must be a non-empty regex string, got {pattern!r}",
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


def _validate_env(name: str, env: object) -> dict[str, str] | None:
    __tracebackhide__ = True
    if env is None:
        return None
    if not isinstance(env, Mapping):
        raise InvalidStarterError(
            f"cannot start {name!r}: env must be a mapping of strings, got {env!r}", name=name
        )
    return {str(k): str(v) for k, v in env.items()}


def _validate_timeout(name: str, timeout: object) -> float:
    __tracebackhide__ = True
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
        raise InvalidStarterError(
            f"cannot start {name!r}: timeout must be a number of seconds above 0, got {timeout!r}",
            name=name,
        )
    return float(timeout)


def _validate_max_read_lines(name: str, value: object) -> int:
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
