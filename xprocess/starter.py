"""What to start and how to tell it is ready: ``ProcessStarter``, read once.

``ensure`` turns whatever it is given (a ``ProcessStarter`` subclass or instance, a factory such
as ``functools.partial(Server, port=5)``, or an old-style ``preparefunc(cwd)``) into one
:class:`StarterDescription` at its door: label, timeout, stop flags, fingerprint. When a start is
needed, the description makes the :class:`LaunchPlan` (this is when ``args()`` runs). Nothing
else inspects the starter. Every mistake a user can make in a starter is reported before anything
is spawned, as a ``ValueError`` (or ``TypeError``) naming the process.
"""

from __future__ import annotations

import difflib
import functools
import inspect
import os
import re
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from xprocess.errors import InvalidStarterError
from xprocess.fingerprint import fingerprint_of
from xprocess.localpath import local_path
from xprocess.probes import BoundProbe
from xprocess.validation import (
    check_executable,
    check_json_data,
    compile_pattern,
    validate_argv,
    validate_env,
    validate_max_read_lines,
    validate_timeout,
)

__all__ = ["LaunchPlan", "ProcessStarter", "StarterDescription", "describe_starter"]

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
    ``wait``
        pytest-xprocess's readiness hook, honoured when a subclass defines it: ``wait(log_file)``
        is called with the log of this start until it returns a true value. An override that
        calls ``super().wait(log_file)`` is called after ``pattern`` and ``startup_check`` (if
        set) passed; one that does not alone tells readiness, as in pytest-xprocess.
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
        # A Path that also answers py.path calls (``self.control_dir.join("x.conf")``).
        self.control_dir: Path = local_path(control_dir)
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

    def wait(self, log_file: IO[str]) -> bool:
        """pytest-xprocess's readiness hook: override it to wait for something else.

        An override is called with the log of this start until it returns a true value. When it
        calls this one (``return super().wait(log_file)``, which returns True), it is called
        after ``pattern`` matched and ``startup_check`` passed, when they are set; when it does
        not, it alone tells readiness, as in pytest-xprocess.
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


KNOWN_ATTRIBUTES = frozenset(
    {
        "args",
        "pattern",
        "env",
        "timeout",
        "max_read_lines",
        "popen_kwargs",
        "terminate_on_interrupt",
        "terminate_at_end",
        "startup_check",
        "data",
        "control_dir",
        "process",
    }
)
# Other names of pytest-xprocess's ProcessStarter that subclasses may define or override.
_ALSO_KNOWN = frozenset({"wait", "filter_lines", "get_lines", "log_line", "wait_callback"})


@dataclass(frozen=True)
class StarterDescription:
    """A starter as ``ensure`` read it: everything decided before a start, and how to start.

    ``label`` names the starter the same way in every worker (a failure recorded under one
    label is shared only with callers of the same starter); ``fingerprint`` changes when the
    starter's definition does (its source, or its plain settings), so a kept process started
    from an older definition is restarted.
    """

    name: str
    label: str
    timeout: float
    terminate_at_end: bool
    terminate_on_interrupt: bool
    fingerprint: str
    make_plan: Callable[[], LaunchPlan] = field(repr=False, compare=False)
    # What can be checked of the command before anything is stopped for a start.
    check_command: Callable[[], None] = field(default=lambda: None, repr=False, compare=False)

    @property
    def stops(self) -> bool:
        """Whether the end (or interruption) of a run that uses it may stop the process."""
        return self.terminate_at_end or self.terminate_on_interrupt


def label_of(starter: object) -> str:
    """A stable label for a starter class or prepare function, the same in every process."""
    if isinstance(starter, functools.partial):
        return label_of(starter.func)
    if isinstance(starter, ProcessStarter) or not (isinstance(starter, type) or callable(starter)):
        starter = type(starter)
    module = getattr(starter, "__module__", "") or ""
    qualname = getattr(starter, "__qualname__", "") or type(starter).__qualname__
    return f"{module}.{qualname}"


def describe_starter(
    name: str, starter: Any, controldir: Path, xprocess: Any
) -> StarterDescription:
    """Read ``starter`` once: a class is instantiated as ``Starter(controldir, xprocess)``, a
    two-argument factory is called so; a one-argument ``preparefunc(cwd)`` is called only when a
    start is needed. Raises InvalidStarterError for what cannot be a starter."""
    __tracebackhide__ = True
    if isinstance(starter, type):
        return _describe_instance(name, starter(controldir, xprocess))
    if isinstance(starter, ProcessStarter):
        return _describe_instance(name, starter)
    if callable(starter):
        label = label_of(starter)
        if _takes_two_arguments(starter):
            made = starter(controldir, xprocess)
            if isinstance(made, ProcessStarter) or hasattr(made, "args"):
                return _describe_instance(name, made)
            return _describe_legacy(name, label, fingerprint_of(label, starter), lambda: made)
        return _describe_legacy(
            name, label, fingerprint_of(label, starter), lambda: starter(controldir)
        )
    raise InvalidStarterError(
        f"cannot start {name!r}: the starter must be a ProcessStarter subclass or a function "
        f"preparefunc(cwd) returning (pattern, args[, env]); got {starter!r}",
        name=name,
    )


def _describe_instance(name: str, starter: Any) -> StarterDescription:
    __tracebackhide__ = True
    _check_attribute_names(name, type(starter))
    timeout = validate_timeout(name, getattr(starter, "timeout", DEFAULT_TIMEOUT))
    at_end = bool(getattr(starter, "terminate_at_end", False))
    on_interrupt = bool(getattr(starter, "terminate_on_interrupt", False))

    def make_plan() -> LaunchPlan:
        return _plan_from_starter(name, starter, timeout, at_end, on_interrupt)

    check_command = _nothing_to_check
    if not _args_is_a_method(starter):
        # Nothing of the starter has to run to know the whole plan: check it now, so a bad
        # one is refused before a running process of that name is stopped for a restart.
        plan = make_plan()

        def make_plan() -> LaunchPlan:
            return plan

        def check_command() -> None:
            __tracebackhide__ = True
            controldir = Path(getattr(starter, "control_dir", ".") or ".")
            check_executable(name, plan.argv, plan.env, controldir, plan.popen_kwargs)

    return StarterDescription(
        name=name,
        label=label_of(type(starter)),
        timeout=timeout,
        terminate_at_end=at_end,
        terminate_on_interrupt=on_interrupt,
        fingerprint=fingerprint_of(label_of(type(starter)), type(starter), starter),
        make_plan=make_plan,
        check_command=check_command,
    )


def _nothing_to_check() -> None:
    """``args()`` runs code: its command is known only once it has run."""


def _describe_legacy(
    name: str, label: str, fingerprint: str, prepare: Callable[[], Any]
) -> StarterDescription:
    return StarterDescription(
        name=name,
        label=label,
        timeout=DEFAULT_TIMEOUT,
        terminate_at_end=False,
        terminate_on_interrupt=False,
        fingerprint=fingerprint,
        make_plan=lambda: _plan_from_prepared(name, label, prepare()),
    )


def _args_is_a_method(starter: object) -> bool:
    """Whether ``args`` is code that runs at start (and may prepare files, or pick a port)."""
    found = inspect.getattr_static(type(starter), "args", None)
    return inspect.isfunction(found) or isinstance(found, (staticmethod, classmethod))


# Starter classes whose attribute names passed: checked once, not at every ensure.
_NAMES_CHECKED: weakref.WeakSet[type] = weakref.WeakSet()


def _check_attribute_names(name: str, cls: type) -> None:
    """Refuse a public attribute that is not a known name but close to one (``timout``)."""
    __tracebackhide__ = True
    if cls in _NAMES_CHECKED:
        return
    known = sorted(KNOWN_ATTRIBUTES)
    for klass in cls.__mro__:
        if klass is ProcessStarter or klass is object:
            break
        for attr in vars(klass):
            if attr.startswith("_") or attr in KNOWN_ATTRIBUTES or attr in _ALSO_KNOWN:
                continue
            close = difflib.get_close_matches(attr, known, n=1, cutoff=0.8)
            if close:
                raise InvalidStarterError(
                    f"cannot start {name!r}: unknown attribute {attr!r} in starter "
                    f"{klass.__qualname__} — did you mean {close[0]!r}? (if it is a name of your "
                    "own, prefix it with '_')",
                    name=name,
                )
    _NAMES_CHECKED.add(cls)


def _plan_from_starter(
    name: str, starter: Any, timeout: float, at_end: bool, on_interrupt: bool
) -> LaunchPlan:
    __tracebackhide__ = True
    raw_args = starter.args
    if callable(raw_args):
        raw_args = raw_args()
    argv = validate_argv(name, raw_args)
    pattern = compile_pattern(name, getattr(starter, "pattern", None))
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
    reader = _overridden_wait(starter)
    if reader is not None and not _defers_to_base_wait(reader):
        # pytest-xprocess's wait() was the whole readiness: an override that does not call
        # super().wait(log_file) alone tells it (a silent daemon beside ``pattern = ""``).
        pattern, check = None, None
    if pattern is None and check is None and reader is None:
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
        env=validate_env(name, _paths_as_text(getattr(starter, "env", None))),
        pattern=pattern,
        check=check,
        timeout=timeout,
        max_read_lines=validate_max_read_lines(
            name, getattr(starter, "max_read_lines", DEFAULT_MAX_READ_LINES)
        ),
        popen_kwargs=dict(getattr(starter, "popen_kwargs", None) or {}),
        terminate_on_interrupt=on_interrupt,
        terminate_at_end=at_end,
        data=check_json_data(name, data if isinstance(data, dict) else {}),
        starter=label_of(type(starter)),
        log_reader=reader,
    )


def _overridden_wait(starter: object) -> Callable[[IO[str]], object] | None:
    """A ``wait(log_file)`` the starter's class defines (pytest-xprocess called it to tell
    readiness; conftests override it to wait for a port instead of a line)."""
    found = inspect.getattr_static(type(starter), "wait", None)
    if found is None or found is ProcessStarter.__dict__["wait"]:
        return None
    wait = getattr(starter, "wait", None)
    return wait if callable(wait) else None


def _defers_to_base_wait(wait: Callable[..., object]) -> bool:
    """Whether an overridden ``wait`` calls ProcessStarter's (``super().wait(log_file)``), the
    one way its ``pattern`` and ``startup_check`` counted in pytest-xprocess. Code that cannot be
    read counts as deferring: the pattern and the check are then waited for first."""
    code = getattr(getattr(wait, "__func__", wait), "__code__", None)
    if code is None:
        return True
    names = set(code.co_names)
    return "wait" in names and bool(names & {"super", "ProcessStarter"})


def _paths_as_text(env: object) -> object:
    """``env`` with path values (``cache.mkdir("target")``) as text, as ``Popen`` takes them."""
    if not isinstance(env, Mapping):
        return env
    return {k: os.fspath(v) if isinstance(v, os.PathLike) else v for k, v in env.items()}


def _takes_two_arguments(function: Callable[..., Any]) -> bool:
    try:
        inspect.signature(function).bind(None, None)
    except TypeError:
        return False
    except ValueError:  # no signature to inspect (some builtins)
        return False
    return True


def _plan_from_prepared(name: str, label: str, result: Any) -> LaunchPlan:
    __tracebackhide__ = True
    if not isinstance(result, (tuple, list)) or len(result) not in (2, 3):
        raise InvalidStarterError(
            f"cannot start {name!r}: preparefunc {label} must return "
            f"(pattern, args) or (pattern, args, env), got {result!r}",
            name=name,
        )
    wait, raw_args, *rest = result
    env = rest[0] if rest else None
    pattern = None if callable(wait) else compile_pattern(name, wait)
    if pattern is None and not callable(wait):
        raise InvalidStarterError(
            f"cannot start {name!r}: preparefunc must return a pattern (a regex string) or a "
            f"callable as its first item, got {wait!r}",
            name=name,
        )
    return LaunchPlan(
        name=name,
        argv=validate_argv(name, raw_args),
        env=validate_env(name, _paths_as_text(env)),
        pattern=pattern,
        check=None,
        timeout=DEFAULT_TIMEOUT,
        max_read_lines=DEFAULT_MAX_READ_LINES,
        popen_kwargs={},
        terminate_on_interrupt=False,
        terminate_at_end=False,
        starter=label,
        log_reader=_legacy_reader(wait) if callable(wait) else None,
    )


def _legacy_reader(wait: Callable[..., object]) -> Callable[[IO[str]], object]:
    """Adapt an old-style readiness callable: it takes the log file, or nothing."""
    try:
        takes_file = bool(inspect.signature(wait).parameters)
    except (TypeError, ValueError):
        takes_file = True
    return wait if takes_file else (lambda log: wait())
