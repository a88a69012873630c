"""Errors recorded by one worker and rebuilt in another keep their class where it can be had."""

from __future__ import annotations

import pickle

import pytest

from xprocess.errors import (
    ExecutableNotFoundError,
    ProcessExitedError,
    StartupError,
    rebuild_error,
    rebuild_exact,
    type_name,
)


class LibraryConnectionError(ConnectionError):
    """A library's own, deriving from a builtin (as requests' and redis' do)."""


class LibrarySyntaxError(Exception):
    """A library's own on plain Exception (as psycopg's SyntaxError)."""


class NeedsKeywords(Exception):
    def __init__(self, *, code: int) -> None:
        super().__init__(f"code {code}")


def replayed(error: BaseException) -> Exception:
    return rebuild_error(type_name(error), str(error), "srv")


def test_a_library_error_comes_back_as_its_own_class() -> None:
    again = replayed(LibraryConnectionError("cannot reach the license server"))
    assert type(again) is LibraryConnectionError and str(again) == "cannot reach the license server"
    assert type(replayed(LibrarySyntaxError("near 'TABLEE'"))) is LibrarySyntaxError


def test_a_class_that_needs_other_arguments_still_comes_back_with_the_message() -> None:
    again = replayed(NeedsKeywords(code=3))
    assert type(again) is NeedsKeywords and str(again) == "code 3"


def test_builtins_and_xprocess_errors_keep_their_plain_names() -> None:
    assert type_name(ValueError("x")) == "ValueError"
    assert type_name(ProcessExitedError("x", name="srv")) == "ProcessExitedError"
    assert type(replayed(KeyError("k"))) is KeyError
    error = replayed(ExecutableNotFoundError("not found", name="srv", filename="memcached"))
    assert isinstance(error, ExecutableNotFoundError) and isinstance(error, FileNotFoundError)


def test_a_class_that_cannot_be_imported_comes_back_as_its_nearest_builtin() -> None:
    def local() -> type[Exception]:
        class Gone(ConnectionRefusedError):
            pass

        return Gone

    recorded = type_name(local()("refused"))
    assert recorded.endswith("(ConnectionRefusedError)")
    again = rebuild_error(recorded, "refused", "srv")
    assert type(again) is ConnectionRefusedError
    assert (
        str(again) == f"{__name__}.test_a_class_that_cannot_be_imported_comes_back_as_its"
        "_nearest_builtin.<locals>.local.<locals>.Gone: refused"
    )


def test_an_unknown_class_on_plain_exception_is_a_startup_error_naming_it() -> None:
    recorded = "gone.module:Missing(Exception)"
    assert rebuild_exact(recorded, "boom") is None
    again = rebuild_error(recorded, "boom", "srv")
    assert type(again) is StartupError and str(again) == "gone.module.Missing: boom"
    assert again.name == "srv"


@pytest.mark.parametrize(
    "error",
    [ProcessExitedError("exited", name="srv"), LibraryConnectionError("no")],
    ids=["xprocess", "library"],
)
def test_rebuilt_errors_pickle(error: Exception) -> None:
    again = replayed(error)
    assert type(pickle.loads(pickle.dumps(again))) is type(error)
