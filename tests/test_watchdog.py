"""A run killed with SIGKILL (all its processes at once) still stops what it had to stop."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from tests.support import HEADER, running, wait_for

CONFTEST = (
    HEADER
    + """
class Server(ProcessStarter):
    pattern = "ready"
    args = child("--count-file", Path(__file__).parent / "started")
    terminate_at_end = True


def drop(value):
    Path(value).write_text("cleaned up")


def compute():
    return str(Path(__file__).parent / "cleanup-ran")
"""
)

KILLED_TEST = """
import time
from pathlib import Path
from conftest import Server, compute, drop

def test_is_killed_while_running(xprocess):
    {body}
    Path("in-test.tmp").write_text("yes")
    Path("in-test.tmp").rename("in-test")
    time.sleep(600)  # the whole run is killed meanwhile
"""


def watchdogs_of(root: Path) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        cmdline = proc.info["cmdline"] or []
        live = proc.info["status"] != psutil.STATUS_ZOMBIE
        if live and "xprocess.watchdog" in cmdline and str(root) in cmdline:
            found.append(proc)
    return found


def kill_a_run(pytester: pytest.Pytester, body: str, *args: str, conftest: str = CONFTEST) -> None:
    """Run pytest in its own session, wait until the test runs, SIGKILL the whole group."""
    pytester.makeconftest(conftest)
    pytester.makepyfile(test_killed=KILLED_TEST.format(body=body))
    run = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-q", *args],
        cwd=pytester.path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_for((pytester.path / "in-test").exists, timeout=60, what="the test to run")
    finally:
        os.killpg(run.pid, signal.SIGKILL)
        run.wait()


def started_pid(pytester: pytest.Pytester) -> int:
    return int((pytester.path / "started").read_text().split()[0])


def records_root(pytester: pytest.Pytester) -> Path:
    return pytester.path / ".pytest_cache" / "d" / ".xprocess"


def test_a_killed_run_has_its_terminate_at_end_process_stopped(pytester: pytest.Pytester) -> None:
    kill_a_run(pytester, 'xprocess.ensure("server", Server)')
    pid = started_pid(pytester)
    wait_for(lambda: not running(pid), timeout=30, what="the managed process to be stopped")
    wait_for(lambda: not watchdogs_of(records_root(pytester)), what="the watchdog to exit")
    (log,) = (records_root(pytester) / ".runs").glob("*.killed.log")
    assert "was killed" in log.read_text()


def test_a_killed_xdist_run_has_its_terminate_at_end_process_stopped(
    pytester: pytest.Pytester,
) -> None:
    pytest.importorskip("xdist", reason="-n needs pytest-xdist: pip install pytest-xdist")
    kill_a_run(pytester, 'xprocess.ensure("server", Server)', "-n", "2")
    pid = started_pid(pytester)
    wait_for(lambda: not running(pid), timeout=30, what="the managed process to be stopped")
    wait_for(lambda: not watchdogs_of(records_root(pytester)), what="the watchdog to exit")


def test_a_killed_run_has_its_shared_values_cleaned_up(pytester: pytest.Pytester) -> None:
    kill_a_run(pytester, 'xprocess.shared("value", compute, cleanup=drop)')
    marker = pytester.path / "cleanup-ran"
    wait_for(marker.exists, timeout=30, what="the cleanup to run")
    assert marker.read_text() == "cleaned up"
    wait_for(lambda: not watchdogs_of(records_root(pytester)), what="the watchdog to exit")


def test_a_run_that_ends_normally_leaves_no_watchdog(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(
        """
        from conftest import Server

        def test_uses(xprocess):
            xprocess.ensure("server", Server)
            runs = xprocess.rootdir / ".runs"
            assert len(list(runs.glob("*.watchdog"))) == 1
        """
    )
    pytester.runpytest_subprocess().assert_outcomes(passed=1)
    assert not running(started_pid(pytester))
    root = records_root(pytester)
    wait_for(lambda: not watchdogs_of(root), what="the watchdog to exit")
    wait_for(lambda: not list((root / ".runs").glob("*.watchdog")), what="its flag to go")


def test_a_run_with_nothing_to_stop_at_its_end_starts_no_watchdog(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeconftest(HEADER)
    pytester.makepyfile(
        """
        from conftest import child
        from xprocess import ProcessStarter

        class Kept(ProcessStarter):
            pattern = "ready"
            args = child()

        def test_uses(xprocess):
            xprocess.ensure("kept", Kept)
            assert not list((xprocess.rootdir / ".runs").glob("*.watchdog"))
            xprocess.getinfo("kept").terminate()
        """
    )
    pytester.runpytest_subprocess().assert_outcomes(passed=1)


def test_a_killed_runs_cleanup_imports_what_its_conftest_imports(
    pytester: pytest.Pytester,
) -> None:
    # The conftest imports a module beside it, as a project's conftest imports the project;
    # the watchdog runs the cleanup with the run's sys.path and working directory.
    pytester.makepyfile(project_names='CLEANED = "cleaned up by the project"\n')
    conftest = CONFTEST.replace(
        'Path(value).write_text("cleaned up")',
        "import project_names\n"
        '    Path(value).write_text(project_names.CLEANED + " in " + os.getcwd())',
    )
    kill_a_run(pytester, 'xprocess.shared("value", compute, cleanup=drop)', conftest=conftest)
    marker = pytester.path / "cleanup-ran"
    wait_for(marker.exists, timeout=30, what="the cleanup to run")
    assert marker.read_text() == f"cleaned up by the project in {pytester.path}"
    wait_for(lambda: not watchdogs_of(records_root(pytester)), what="the watchdog to exit")
