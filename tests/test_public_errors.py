"""Public conftests written for pytest-xprocess 1.0.2: the errors they catch (a retry loop on
TimeoutError, a client library's own error classes) reach them, in every xdist worker, and
an error of theirs shows their code, not xprocess's."""

from __future__ import annotations

import pytest

from tests.support import HEADER, count_lines, nothing_left


def test_a_retry_loop_on_timeout_error_survives_a_server_that_dies_at_start_under_xdist(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeconftest(
        HEADER
        + """
import time

ROOT = Path(__file__).parent

class Flaky(ProcessStarter):
    pattern = "ready"
    timeout = 60
    args = child("--fail-once", ROOT / "failed-once", "--count-file", ROOT / "starts")

@pytest.fixture(scope="session")
def flaky(xprocess):
    max_retries = 6
    for attempt in range(max_retries):
        try:
            xprocess.ensure("flaky", Flaky)
            break
        except TimeoutError:
            if attempt == max_retries - 1:
                raise
            time.sleep(0.1)
    yield xprocess.getinfo("flaky")
    xprocess.getinfo("flaky").terminate()
"""
    )
    pytester.makepyfile(
        "import pytest\n@pytest.mark.parametrize('i', range(8))\n"
        "def test_up(flaky, i):\n    assert flaky.isrunning()\n"
    )
    pytester.runpytest_subprocess("-n", "4").assert_outcomes(passed=8)
    # The failed start and one that worked (or more: a worker done with its tests before the
    # others hold the server releases it, and the next starts it again).
    assert count_lines(pytester.path / "starts") >= 2
    nothing_left(pytester)


LIBRARY = '''
"""A client library with errors named like builtins."""

class ConnectionError(ConnectionError):
    """The library's own, as in requests or redis."""

class SyntaxError(Exception):
    """As psycopg's: not a builtin SyntaxError."""

def connect(where):
    raise ConnectionError(f"cannot reach {where}")
'''


def test_a_library_error_of_a_shared_value_keeps_its_class_in_every_worker(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(mylib=LIBRARY)
    pytester.makeconftest(
        """
import pytest
import mylib

def create_schema():
    raise mylib.SyntaxError("syntax error at or near 'TABLEE'")

@pytest.fixture(scope="session")
def schema(xprocess):
    return xprocess.shared("schema", create_schema)
"""
    )
    pytester.makepyfile(
        """
import pytest
import mylib

@pytest.mark.parametrize("i", range(8))
def test_schema(request, i):
    with pytest.raises(mylib.SyntaxError, match="near 'TABLEE'"):
        request.getfixturevalue("schema")
"""
    )
    pytester.runpytest_subprocess("-n", "4").assert_outcomes(passed=8)


def test_a_library_error_of_a_failed_start_keeps_its_class_in_every_worker(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(mylib=LIBRARY)
    pytester.makeconftest(
        HEADER
        + """
import mylib

ROOT = Path(__file__).parent

class Server(ProcessStarter):
    pattern = "ready"
    def args(self):
        with open(ROOT / "tries", "a") as f:
            f.write("try\\n")
        mylib.connect("the license server")
"""
    )
    pytester.makepyfile(
        """
import pytest
import mylib
from conftest import Server

@pytest.mark.parametrize("i", range(8))
def test_start(xprocess, i):
    with pytest.raises(mylib.ConnectionError, match="license server"):
        xprocess.ensure("server", Server)
"""
    )
    pytester.runpytest_subprocess("-n", "4").assert_outcomes(passed=8)


def test_a_shared_value_error_shows_the_compute_not_xprocess(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        """
import pytest

def create_database():
    raise ValueError("no database server")

@pytest.fixture(scope="session")
def database(xprocess):
    return xprocess.shared("database", create_database)
"""
    )
    pytester.makepyfile("def test_db(database):\n    pass\n")
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*raise ValueError*", "E *ValueError: no database server"])
    shown = result.stdout.str()
    for frame in ("xprocess/manager.py", "xprocess/values.py", "in shared_value"):
        assert frame not in shown, shown
