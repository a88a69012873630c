"""How a server fixture fails: one short screen, said in full once, not repeated per test.

A session fixture that raises is cached by pytest and raised again at every test that uses it,
with its whole traceback each time. Here the errors xprocess words for people (a program not
found, a missing extra, a server that did not start) become a message without a traceback, and
each later test that needs the failed fixture gets one line pointing at the first.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import pytest

from xprocess.errors import XProcessError

__all__ = ["fixture_errors", "server_fixture_value", "worded_setup"]

T = TypeVar("T")

# Errors whose message says all (what, where, what to do): a traceback would only bury it.
WORDED_ERRORS: tuple[type[BaseException], ...] = (XProcessError, ModuleNotFoundError)

_FIRST_FAILURE = pytest.StashKey[dict[str, str]]()


@contextmanager
def fixture_errors(fixture: str) -> Iterator[None]:
    """Turn the worded errors raised inside into a failure of ``fixture`` without a traceback."""
    __tracebackhide__ = True
    try:
        yield
    except WORDED_ERRORS as exc:
        message = f"{fixture}: {type(exc).__name__}: {exc}"
        raise pytest.fail.Exception(message, pytrace=False) from None


def worded_setup(
    function: Callable[..., Iterator[T]],
) -> Callable[..., Iterator[T]]:
    """Decorate a session fixture (a generator taking ``request`` first): the worded errors of
    its setup fail it without a traceback (see :func:`fixture_errors`); its teardown is as is."""

    @functools.wraps(function)
    def fixture(request: pytest.FixtureRequest, *args: Any, **kwargs: Any) -> Iterator[T]:
        __tracebackhide__ = True
        steps = function(request, *args, **kwargs)
        with fixture_errors(request.fixturename or function.__name__):
            value = next(steps)
        yield value
        next(steps, None)  # the teardown

    return fixture


def server_fixture_value(request: pytest.FixtureRequest, fixture: str) -> Any:
    """The value of the session fixture ``fixture``; after its first failure, one line.

    The first test that needs it shows the whole error; the others say where it is.
    """
    __tracebackhide__ = True
    failures = request.config.stash.setdefault(_FIRST_FAILURE, {})
    try:
        return request.getfixturevalue(fixture)
    except (Exception, pytest.fail.Exception):
        first = failures.setdefault(fixture, request.node.nodeid)
        if first != request.node.nodeid:
            message = f"{fixture} could not be set up: see the error at {first} above"
            # One frame left visible keeps pytest from noting that every frame is hidden; a
            # failure without a traceback shows none of them anyway.
            __tracebackhide__ = False
            raise pytest.fail.Exception(message, pytrace=False) from None
        raise
