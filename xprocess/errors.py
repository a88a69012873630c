"""The exceptions xprocess raises.

Each one subclasses the builtin a caller would already catch: a start that did not succeed is a
:class:`RuntimeError`, a deadline that passed is a :class:`TimeoutError`, bad input is a
:class:`ValueError`. All of them also subclass :class:`XProcessError`.
"""

from __future__ import annotations

import builtins
import errno

__all__ = [
    "AddressInUseError",
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


class ProcessExitedError(StartupError):
    """The process exited before it was ready; the message holds its exit code and log tail."""


class AddressInUseError(StartupError):
    """Before the start, another program already answers where the starter's probe connects
    (a fixed port taken); nothing was started. The message names the address and its holder."""


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
        AddressInUseError,
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


def rebuild_error(type_name: str, message: str, name: str | None) -> Exception:
    """Recreate an error another process recorded, keeping its type and message.

    xprocess's own errors and builtin exceptions come back as themselves; anything else as a
    StartupError whose message names the original type.
    """
    if type_name in _BY_NAME:
        return _rebuild(type_name, message, name)
    builtin = getattr(builtins, type_name, None)
    if isinstance(builtin, type) and issubclass(builtin, Exception):
        try:
            return builtin(message)
        except Exception:  # a builtin with another signature (UnicodeDecodeError, ...)
            pass
    return StartupError(f"{type_name}: {message}", name=name)
