"""xprocess.shared(): computed once per run for every worker, cleaned up once at the end."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import HEADER, child_args
from xprocess import ProcessStarter, SharedValueError, XProcess

VALUES = """
import json, os
from pathlib import Path
import pytest

ROOT = Path(__file__).parent
KEY = os.environ.get("VALUE_KEY")

def log(event, text=""):
    with open(ROOT / "events", "a") as f:
        f.write(f"{event} {text}\\n")

def create_database():
    log("computed")
    return {"url": "db://test-" + os.urandom(4).hex(), "tables": ["a", "b"]}

def drop_database(value):
    used = sum(1 for line in (ROOT / "events").read_text().splitlines() if line.startswith("used"))
    log("cleaned", f"{value['url']} after {used} uses")

@pytest.fixture(scope="session")
def database(xprocess):
    return xprocess.shared("database", create_database, cleanup=drop_database, key=KEY)

@pytest.fixture
def use(database):
    log("used", database["url"])
    return database
"""


def events(pytester: pytest.Pytester) -> list[tuple[str, str]]:
    path = pytester.path / "events"
    lines = path.read_text().splitlines() if path.exists() else []
    return [(line.split(" ", 1)[0], line.split(" ", 1)[1]) for line in lines]


def kinds(pytester: pytest.Pytester, kind: str) -> list[str]:
    return [text for event, text in events(pytester) if event == kind]


TESTS = """
import pytest

@pytest.mark.parametrize("i", range(12))
def test_uses(use, i):
    assert use["url"].startswith("db://test-")
    assert use["tables"] == ["a", "b"]
"""


@pytest.mark.parametrize("workers", [[], ["-n", "4"]], ids=["no-xdist", "n4"])
def test_computed_once_shared_everywhere_cleaned_up_once_after_the_last_use(
    pytester: pytest.Pytester, workers: list[str]
) -> None:
    pytester.makeconftest(VALUES)
    pytester.makepyfile(TESTS)
    pytester.runpytest_subprocess(*workers).assert_outcomes(passed=12)
    assert len(kinds(pytester, "computed")) == 1
    urls = set(kinds(pytester, "used"))
    assert len(urls) == 1
    (cleaned,) = kinds(pytester, "cleaned")
    assert cleaned == f"{urls.pop()} after 12 uses"
    assert not list((pytester.path / ".pytest_cache" / "d" / ".xprocess" / ".values").glob("*/*"))


def test_a_failed_computation_is_shared_and_tried_again_next_run(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeconftest(
        VALUES.replace(
            '    log("computed")\n', '    log("computed")\n    raise ValueError("no db")\n'
        )
    )
    pytester.makepyfile(TESTS)
    result = pytester.runpytest_subprocess("-n", "4")
    result.assert_outcomes(errors=12)
    assert len(kinds(pytester, "computed")) == 1
    result.stdout.fnmatch_lines(["E * ValueError: no db"])
    assert kinds(pytester, "cleaned") == []
    pytester.runpytest_subprocess("-n", "4").assert_outcomes(errors=12)
    assert len(kinds(pytester, "computed")) == 2


def test_an_early_stop_with_x_still_cleans_up_once(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(VALUES)
    pytester.makepyfile("def test_fails(use):\n    assert False\n" + TESTS)
    result = pytester.runpytest_subprocess("-n", "4", "-x", "-p", "no:randomly")
    assert result.ret != 0
    assert result.parseoutcomes()["failed"] == 1
    assert len(kinds(pytester, "computed")) == 1
    assert len(kinds(pytester, "cleaned")) == 1


def test_a_killed_worker_does_not_prevent_the_cleanup(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(VALUES)
    pytester.makepyfile(
        TESTS
        + """
import os, signal

def test_crashes(use):
    os.kill(os.getpid(), signal.SIGKILL)
"""
    )
    result = pytester.runpytest_subprocess("-n", "2")
    result.stdout.fnmatch_lines(["*crashed*"])
    assert result.parseoutcomes()["passed"] == 12
    assert len(kinds(pytester, "computed")) == 1
    (cleaned,) = kinds(pytester, "cleaned")
    assert cleaned.endswith("after 13 uses")


def test_a_value_that_is_not_json_fails_with_a_type_error_naming_it(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        """
import pytest

def test_it(xprocess):
    with pytest.raises(TypeError, match="shared value 'when': a set cannot be stored"):
        xprocess.shared("when", lambda: {1, 2})
"""
    )
    pytester.runpytest().assert_outcomes(passed=1)


def test_custom_dumps_and_loads(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
from datetime import datetime

def test_it(xprocess):
    when = xprocess.shared("when", datetime.now, dumps=datetime.isoformat,
                           loads=datetime.fromisoformat)
    assert isinstance(when, datetime)
    assert xprocess.shared("when", lambda: None, loads=datetime.fromisoformat) == when
"""
    )
    pytester.runpytest().assert_outcomes(passed=1)


def test_a_cleanup_that_cannot_be_found_by_name_is_refused_at_once(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        """
import pytest

def test_it(xprocess):
    with pytest.raises(ValueError, match="must be a named function defined at module level"):
        xprocess.shared("v", lambda: 1, cleanup=lambda value: None)
"""
    )
    pytester.runpytest().assert_outcomes(passed=1)


def test_a_kept_value_is_reused_until_its_key_changes(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makeconftest(VALUES)
    pytester.makepyfile(TESTS)
    monkeypatch.setenv("VALUE_KEY", "v1")
    pytester.runpytest_subprocess("-n", "2").assert_outcomes(passed=12)
    pytester.runpytest_subprocess("-n", "2").assert_outcomes(passed=12)
    assert len(kinds(pytester, "computed")) == 1
    assert kinds(pytester, "cleaned") == []
    assert len(set(kinds(pytester, "used"))) == 1
    pytester.runpytest_subprocess("--xshow").stdout.fnmatch_lines(
        ["- database VALUE (run *, kept, key v1)"]
    )

    monkeypatch.setenv("VALUE_KEY", "v2")
    pytester.runpytest_subprocess("-n", "2").assert_outcomes(passed=12)
    assert len(kinds(pytester, "computed")) == 2
    assert len(kinds(pytester, "cleaned")) == 1  # the stale v1 value
    assert len(set(kinds(pytester, "used"))) == 2

    result = pytester.runpytest_subprocess("--xkill")
    result.stdout.fnmatch_lines(["- database VALUE CLEANED UP"])
    assert len(kinds(pytester, "cleaned")) == 2
    pytester.runpytest_subprocess("-n", "2").assert_outcomes(passed=12)
    assert len(kinds(pytester, "computed")) == 3
    pytester.runpytest_subprocess("--xkill")


def test_a_failing_cleanup_is_reported_shown_and_retried_by_xkill(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeconftest(
        VALUES.replace(
            "def drop_database(value):\n",
            "def drop_database(value):\n    if not (ROOT / 'fixed').exists():\n"
            "        raise OSError('server gone')\n",
        )
    )
    pytester.makepyfile(TESTS)
    result = pytester.runpytest_subprocess("-n", "2")
    result.assert_outcomes(passed=12)
    result.stdout.fnmatch_lines(
        ["*cleanup of shared value 'database' failed: OSError: server gone*"]
    )
    pytester.runpytest_subprocess("--xshow").stdout.fnmatch_lines(
        ["- database VALUE (run *, cleanup failed: OSError: server gone*"]
    )
    Path(pytester.path / "fixed").write_text("")
    pytester.runpytest_subprocess("--xkill").stdout.fnmatch_lines(["- database VALUE CLEANED UP"])
    assert len(kinds(pytester, "cleaned")) == 1


def test_a_cleanup_that_fails_the_test_way_does_not_keep_processes_alive(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeconftest(
        VALUES.replace(
            "def drop_database(value):\n",
            "def drop_database(value):\n    pytest.fail('cannot drop')\n",
        )
        + """
import sys
from xprocess import ProcessStarter

class Server(ProcessStarter):
    pattern = "ready"
    terminate_at_end = True
    args = [sys.executable, "-u", "-c", "import os, time; print(os.getpid(), 'ready', flush=True);"
            " time.sleep(600)"]
"""
    )
    pytester.makepyfile(
        "from conftest import Server\ndef test_it(use, xprocess):\n"
        "    xprocess.ensure('server', Server)\n"
    )
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(passed=1)
    assert result.ret == 0
    result.stdout.fnmatch_lines(
        ["*cleanup of shared value 'database' failed: Failed: cannot drop*"]
    )
    from xprocess.manager import XProcessInfo

    info = XProcessInfo(pytester.path / ".pytest_cache" / "d" / ".xprocess", "server")
    assert info.pid is not None
    assert not info.isrunning()


def test_a_stale_value_whose_cleanup_raises_is_reported_and_replaced(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makeconftest(
        VALUES.replace(
            "def drop_database(value):\n",
            "def drop_database(value):\n    raise OSError('server of ' + value['url'] + ' gone')\n",
        )
    )
    pytester.makepyfile(TESTS)
    monkeypatch.setenv("VALUE_KEY", "v1")
    pytester.runpytest_subprocess("-n", "2").assert_outcomes(passed=12)
    monkeypatch.setenv("VALUE_KEY", "v2")
    result = pytester.runpytest_subprocess("-n", "2", "-W", "always")
    result.assert_outcomes(passed=12, warnings=1)
    result.stdout.fnmatch_lines(
        [
            "*CleanupWarning: shared value 'database': the cleanup of its stale value "
            "(key 'v1'*raised OSError: server of db://test-* gone*",
            "*Traceback (most recent call last):*",
            "*in drop_database*",
        ]
    )
    assert len(kinds(pytester, "computed")) == 2
    # The next run with the same key reuses the new value: the failure is not met again.
    again = pytester.runpytest_subprocess("-n", "2")
    again.assert_outcomes(passed=12)
    assert len(kinds(pytester, "computed")) == 2
    pytester.runpytest_subprocess("--xkill")


def table_on_server(drop_table: str, *, at_end: bool = False) -> str:
    """A conftest whose session fixture ``table`` is a value tied to the process "server".

    ``drop_table`` is the code of its cleanup, ``drop_table(value)``; ``at_end`` is the server's
    ``terminate_at_end``.
    """
    return (
        HEADER
        + drop_table
        + f"""
ROOT = Path(__file__).parent

class Server(ProcessStarter):
    pattern = "ready"
    args = child()
    terminate_at_end = {at_end}

def create_table():
    return "table"

@pytest.fixture(scope="session")
def table(xprocess):
    xprocess.ensure("server", Server)
    return xprocess.shared("table", create_table, cleanup=drop_table, key="k", process="server")
"""
    )


def test_xkill_cleans_up_values_while_their_server_still_runs(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        table_on_server(
            """
from xprocess.manager import XProcessInfo

def drop_table(value):
    info = XProcessInfo(ROOT / ".pytest_cache" / "d" / ".xprocess", "server")
    (ROOT / "events").write_text("dropped while server " + str(info.isrunning()))
"""
        )
    )
    pytester.makepyfile("def test_it(table):\n    assert table == 'table'\n")
    pytester.runpytest_subprocess().assert_outcomes(passed=1)
    result = pytester.runpytest_subprocess("--xkill")
    result.stdout.fnmatch_lines(["- table VALUE CLEANED UP", "* server TERMINATED"])
    assert (pytester.path / "events").read_text() == "dropped while server True"


def test_xkill_forgets_a_value_whose_server_ended_with_the_run_without_calling_into_it(
    pytester: pytest.Pytester,
) -> None:
    # A template database in a server stopped at the end of the run: its cleanup could only
    # fail to connect, and must not turn a CI step running --xkill red.
    pytester.makeconftest(
        table_on_server(
            """
def drop_table(value):
    (ROOT / "events").write_text("cleanup called")
    raise ConnectionRefusedError("the server is gone")
""",
            at_end=True,
        )
    )
    pytester.makepyfile("def test_it(table):\n    assert table == 'table'\n")
    pytester.runpytest_subprocess().assert_outcomes(passed=1)
    shown = pytester.runpytest_subprocess("--xshow")
    shown.stdout.fnmatch_lines(["- table VALUE (*tied to server pid *, which is gone, kept*"])
    result = pytester.runpytest_subprocess("--xkill")
    result.stdout.fnmatch_lines(
        ["- table VALUE CLEARED (its process server is gone, nothing to clean up)"]
    )
    result.stdout.no_fnmatch_line("*cleanup failed*")
    assert result.ret == 0
    assert not (pytester.path / "events").exists()
    pytester.runpytest_subprocess("--xshow").stdout.no_fnmatch_line("*table VALUE*")


class Server(ProcessStarter):
    pattern = "ready"
    args = child_args()


@pytest.mark.parametrize("key", [None, "k"], ids=["this-run", "kept"])
def test_a_value_tied_to_a_process_is_computed_again_once_the_process_restarted(
    tmp_path: Path, key: str | None
) -> None:
    computed: list[int] = []

    def compute() -> int:
        computed.append(len(computed))
        return len(computed)

    with XProcess(None, tmp_path) as xprocess:
        xprocess.ensure("server", Server)
        try:
            first = xprocess.shared("port", compute, key=key, process="server")
            assert xprocess.shared("port", compute, key=key, process="server") == first
            xprocess.ensure("server", Server, restart=True)
            second = xprocess.shared("port", compute, key=key, process="server")
            assert (first, second) == (1, 2)
            assert xprocess.shared("port", compute, key=key, process="server") == second
        finally:
            xprocess.getinfo("server").terminate()


def test_a_value_tied_to_a_process_that_does_not_run_is_refused(tmp_path: Path) -> None:
    with XProcess(None, tmp_path) as xprocess, pytest.raises(SharedValueError) as raised:
        xprocess.shared("port", lambda: 1, process="server")
    message = str(raised.value)
    assert "tied to the process 'server', which is not running" in message
    assert "xprocess.ensure('server', ...)" in message


def test_shared_waits_as_long_as_a_value_by_default() -> None:
    """``XProcess.shared`` spells the default out (so the manager imports no values module)."""
    import inspect

    from xprocess import values

    default = inspect.signature(XProcess.shared).parameters["timeout"].default
    assert default == values.DEFAULT_TIMEOUT
