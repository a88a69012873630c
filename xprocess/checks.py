"""Calling a ``startup_check``: in a thread that can be abandoned, telling bugs from "not ready".

A check of the user's own may block (a ``recv()`` without a timeout on a server that accepts but
never answers): it runs in a daemon worker thread, so that the waiter can give up on it at the
starter's timeout. The worker is kept between calls and starts, since handing a call to a running
thread costs microseconds.
"""

from __future__ import annotations

import queue
import sys
import threading
from collections.abc import Callable

from xprocess.errors import XProcessError
from xprocess.probes import ProbeFailed

__all__ = [
    "Call",
    "abandon_worker",
    "as_cause",
    "is_not_ready_error",
    "is_programming_error",
    "submit",
]

_local = threading.local()


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


class Call:
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
        self._jobs: queue.SimpleQueue[Call | None] = queue.SimpleQueue()
        thread = threading.Thread(target=self._serve, name="xprocess-startup-check", daemon=True)
        thread.start()

    def _serve(self) -> None:
        while (job := self._jobs.get()) is not None:
            job.run()

    def submit(self, check: Callable[[], object]) -> Call:
        job = Call(check)
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


def abandon_worker() -> None:
    worker: _CheckWorker | None = getattr(_local, "check_worker", None)
    if worker is not None:
        worker.abandon()
        _local.check_worker = None


def as_cause(exc: BaseException | None) -> BaseException | None:
    # A refused connection's traceback (socket internals, a client library) says nothing the
    # message does not: chain the exception without it, so the failure fits on a screen.
    if exc is not None and is_not_ready_error(exc):
        return exc.with_traceback(None)
    return exc


def submit(check: Callable[[], object]) -> Call:
    """Hand ``check`` to this thread's worker; wait on the returned call's ``done``."""
    return _worker().submit(check)
