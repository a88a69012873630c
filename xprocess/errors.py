"""The exceptions xprocess raises.

Each one subclasses the builtin a caller would already catch: a start that did not succeed is a
:class:`RuntimeError`, a deadline that passed is a :class:`TimeoutError` (and so is an early exit,
which pytest-xprocess reported as one), bad input is a :class:`ValueError`. All of them also
subclass :class:`XProcessError`.

An error recorded for other xdist workers is named by :func:`type_name` and rebuilt there by
:func:`rebuild_error`: as its own class when that can be imported, else as its nearest builtin.
"""

from __future__ import annotations

import builtins
import errno
import importlib
import re
import sys

__all__ = [
    "CleanupWarning",
    "ExecutableNotFoundError",
    "InvalidStarterError",
    "PatternNotFoundError",
    "ProcessExitedError",
    "ServerNotFoundError",
    "SharedValueError",
    "StartupError",
    "StartupTimeoutError",
    "UnsafePathError",
    "UnsupportedPlatformError",
    "XProcessError",
    "rebuild_error",
    "rebuild_exact",
    "type_name",
]


class XProcessError(Exception):
    """Base of every error xprocess raises; ``name`` is the managed process it concerns."""

    def __init__(self, message: str, *, name: str | None = None) -> None:
        super().__init__(message)
        self.name = name

    def __reduce__(self) -> tuple[object, ...]:
        # Keyword-only arguments do not survive the default pickling, and xdist reports
        # exceptions across processes.
        return (_rebuild, (type(self).__name__, str(self), self.name))


class StartupError(XProcessError, RuntimeError):
    """A managed process could not be started or did not become ready."""


class ProcessExitedError(StartupError, TimeoutError):
    """The process exited before it was ready; the message holds its exit code and log tail.

    Raised at once, not at the timeout. It is also a :class:`TimeoutError`, because
    pytest-xprocess reported an early exit so (once its timeout passed), and conftests retry
    a flaky server with ``except TimeoutError``; and a :class:`RuntimeError`, as every failed start.
    """


class PatternNotFoundError(StartupError):
    """The readiness pattern did not appear within ``max_read_lines`` lines of log."""


class StartupTimeoutError(XProcessError, TimeoutError):
    """The process was not ready before the starter's ``timeout`` passed."""


class InvalidStarterError(XProcessError, ValueError):
    """A name, starter or argument is invalid; nothing was started or written."""


class _ProgramNotFound(FileNotFoundError):
    """A program that is not there: also a ``FileNotFoundError`` with ``errno.ENOENT`` and
    ``filename`` (the program), so ``except OSError as e: if e.errno == errno.ENOENT`` works."""

    def __init__(self, message: str, *, name: str | None = None, filename: str = "") -> None:
        super().__init__(errno.ENOENT, message, filename)
        self.name = name

    def __str__(self) -> str:
        return str(self.strerror)

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild, (type(self).__name__, str(self), self.name, self.filename))


class ExecutableNotFoundError(_ProgramNotFound, InvalidStarterError):
    """The command of a starter cannot be found or run; nothing was started.

    Also a ``FileNotFoundError`` with ``errno.ENOENT`` and ``filename`` (the program), so that
    ``except OSError as e: if e.errno == errno.ENOENT: pytest.skip(...)`` keeps working.
    """


class SharedValueError(XProcessError, RuntimeError):
    """Computing a shared value failed in another worker; the message is that failure's."""


class UnsupportedPlatformError(XProcessError, RuntimeError):
    """xprocess cannot manage processes on this platform (Windows)."""


class ServerNotFoundError(_ProgramNotFound, XProcessError):
    """A server program (``postgres``, ``redis-server``) is not where it was looked for.

    Its ``errno`` is ``errno.ENOENT`` and its ``filename`` the program, as for
    :class:`ExecutableNotFoundError`.
    """


class CleanupWarning(UserWarning):
    """The cleanup of a stale shared value raised; the new value was computed anyway."""


class UnsafePathError(XProcessError, PermissionError):
    """A control dir or log under the records root is a symlink; nothing is written through it."""


_BY_NAME: dict[str, type[XProcessError]] = {
    cls.__name__: cls
    for cls in (
        XProcessError,
        StartupError,
        ProcessExitedError,
        PatternNotFoundError,
        StartupTimeoutError,
        InvalidStarterError,
        ExecutableNotFoundError,
        SharedValueError,
        UnsupportedPlatformError,
        ServerNotFoundError,
        UnsafePathError,
    )
}


def _rebuild(
    type_name: str, message: str, name: str | None, filename: str | None = None
) -> XProcessError:
    if type_name in (ExecutableNotFoundError.__name__, ServerNotFoundError.__name__):
        found = _BY_NAME[type_name]
        return found(message, name=name, filename=filename or "")  # type: ignore[call-arg]
    return _BY_NAME.get(type_name, StartupError)(message, name=name)


def type_name(error: BaseException) -> str:
    """How a record names the class of ``error``, so that another process can rebuild it.

    A builtin is its name (``ValueError``), as are xprocess's own errors; any other class is
    ``module:qualname(builtin)``, the builtin being the nearest one it derives from, for the
    process that cannot import the class.
    """
    cls = type(error)
    if cls.__module__ == "builtins" or _BY_NAME.get(cls.__name__) is cls:
        return cls.__name__
    nearest = next(
        (c.__name__ for c in cls.__mro__ if c.__module__ == "builtins" and c is not cls),
        "Exception",
    )
    return f"{cls.__module__}:{cls.__qualname__}({nearest})"


# module:qualname(builtin); a qualname may hold "<locals>" (a class made in a function).
_QUALIFIED = re.compile(r"(?P<module>[\w.]+):(?P<qualname>[^():]+)\((?P<builtin>\w+)\)")


def rebuild_exact(recorded: str, message: str) -> Exception | None:
    """The error ``type_name`` named ``recorded``, with ``message``: its own class if it can
    be imported (and made from a message), else its nearest builtin (with a message that starts
    with the class's name); None when that builtin is plain ``Exception`` or nothing fits."""
    found = _QUALIFIED.fullmatch(recorded)
    if found is None:
        builtin = getattr(builtins, recorded, None)
        return _made(builtin, message)
    cls = _importable(found["module"], found["qualname"])
    if cls is not None:
        made = _made(cls, message)
        if made is not None:
            return made
    if found["builtin"] in ("Exception", "BaseException"):
        return None
    name = f"{found['module']}.{found['qualname']}"
    return _made(getattr(builtins, found["builtin"], None), f"{name}: {message}")


def _importable(module_name: str, qualname: str) -> type | None:
    """The class ``qualname`` of ``module_name``, importing the module if need be."""
    try:
        module = sys.modules.get(module_name) or importlib.import_module(module_name)
        obj: object = module
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except Exception:  # not importable here, or importing it fails: the builtin will do
        return None
    return obj if isinstance(obj, type) else None


def _made(cls: object, message: str) -> Exception | None:
    """An instance of the exception class ``cls`` saying ``message``, or None."""
    if not (isinstance(cls, type) and issubclass(cls, Exception)):
        return None
    try:
        error = cls(message)
        str(error)
    except Exception:  # another signature (UnicodeDecodeError, a class with keyword arguments)
        try:
            error = cls.__new__(cls)
            error.args = (message,)
            str(error)
        except Exception:
            return None
    return error


def rebuild_error(type_name: str, message: str, name: str | None) -> Exception:
    """Recreate an error another process recorded, keeping its type and message.

    xprocess's own errors come back as themselves, others as their own class or nearest builtin
    (see :func:`rebuild_exact`); anything else as a StartupError whose message names the type.
    """
    if type_name in _BY_NAME:
        return _rebuild(type_name, message, name)
    exact = rebuild_exact(type_name, message)
    if exact is not None:
        return exact
    shown = type_name.split("(", 1)[0].replace(":", ".")
    return StartupError(f"{shown}: {message}", name=name)
