"""Import what the servers' fixtures need while an xdist worker waits for its first test.

A worker collects its tests, sends them to the controller, then waits until the controller has
the collections of all workers and hands out tests: at ``-n 4`` a worker idles there for a tenth
of a second or more. The first test using a server's fixture then imports the client library
(``redis``: about 50 ms, ``psycopg``: about 100 ms) and the engine. Started when the collection
is done, in a thread, those imports fill the wait instead.

The thread is joined before the first test's setup, so no import runs beside the test's own (a
circular import in two threads at once can deadlock). An import that fails is left for the
fixture to import again and report as usual.

Work of a longer wait begins earlier still: a fixture may carry a function of the config
(:func:`ahead`) that the run's main process calls when its session starts, before the workers
have booted (PostgreSQL's ``initdb``, see ``_pgcache.make_ahead``). Only fixtures of the
modules registered as plugins by then (conftest files, ``pytest_plugins``) are seen.
"""

from __future__ import annotations

import importlib
import inspect
import threading
from collections.abc import Callable, Iterable, Sequence
from types import ModuleType
from typing import Any, TypeVar

__all__ = [
    "AHEAD_ATTRIBUTE",
    "ENGINE",
    "IMPORTS_ATTRIBUTE",
    "ahead",
    "begin_ahead",
    "finish",
    "imports_of",
    "needs",
    "start",
]

F = TypeVar("F", bound=Callable[..., Any])

# Set on a fixture function: the modules its setup imports.
IMPORTS_ATTRIBUTE = "_xprocess_warm_up"

# Set on a fixture: what to begin at the start of the session (a function of the config).
AHEAD_ATTRIBUTE = "_xprocess_ahead"

# What the ``xprocess`` fixture and a server's reuse or start import, in their order.
ENGINE = (
    "xprocess.paths",
    "xprocess.runs",
    "xprocess.manager",
    "xprocess.notices",
    "xprocess.leases",
)

_thread: threading.Thread | None = None


def needs(*modules: str) -> Callable[[F], F]:
    """Mark a fixture function as importing ``modules`` (and the engine) in its setup."""

    def mark(function: F) -> F:
        setattr(function, IMPORTS_ATTRIBUTE, (*modules, *ENGINE))
        return function

    return mark


def imports_of(fixture_functions: Iterable[Any]) -> list[str]:
    """The modules the marked ones of ``fixture_functions`` import, each once, in order."""
    wanted: dict[str, None] = {}
    for function in fixture_functions:
        for module in getattr(function, IMPORTS_ATTRIBUTE, ()):
            wanted.setdefault(module, None)
    return list(wanted)


def _import_all(modules: Sequence[str]) -> None:
    for module in modules:
        try:
            importlib.import_module(module)
        except Exception:  # the fixture imports it again and says what is wrong
            continue


def start(modules: Sequence[str]) -> None:
    """Import ``modules`` in a thread of their own (see the module's docstring)."""
    global _thread
    if not modules or _thread is not None:
        return
    _thread = threading.Thread(
        target=_import_all, args=(tuple(modules),), name="xprocess-warm-up", daemon=True
    )
    _thread.start()


def finish() -> None:
    """Wait for the imports :func:`start` began, if any."""
    global _thread
    thread, _thread = _thread, None
    if thread is not None:
        thread.join()


def ahead(fixture: F, begin: Callable[[Any], None]) -> F:
    """Mark ``fixture`` (as ``pytest.fixture`` returned it) with ``begin(config)``, called at the
    start of the session (see the module's docstring); ``begin`` must not raise."""
    setattr(fixture, AHEAD_ATTRIBUTE, begin)
    return fixture


def begin_ahead(plugins: Iterable[object], config: Any) -> None:
    """Call what the fixtures of the module ``plugins`` were marked with by :func:`ahead`."""
    begun: set[int] = set()
    for plugin in plugins:
        if not isinstance(plugin, ModuleType):
            continue
        for value in list(vars(plugin).values()):
            # Looked up without running the object's own code (a lazy proxy in a conftest may
            # raise on any attribute), and nothing it does may stop the session.
            try:
                begin = inspect.getattr_static(value, AHEAD_ATTRIBUTE, None)
                if callable(begin) and id(begin) not in begun:
                    begun.add(id(begin))
                    begin(config)
            except Exception:
                continue
