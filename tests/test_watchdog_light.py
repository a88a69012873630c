"""The watchdog waits with nothing of the engine loaded, and its fallback still stands in for a
killed run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from tests.support import running, wait_for
from tests.test_watchdog import CONFTEST, kill_a_run, records_root, started_pid, watchdogs_of
from xprocess.capabilities import HAVE_PIDFD, PORTABLE_VARIABLE

WAITING_TEST = """
import time
from pathlib import Path
from conftest import Server

def test_waits_for_the_check(xprocess):
    xprocess.ensure("server", Server)
    Path("in-test").write_text("yes")
    deadline = time.monotonic() + 120
    while not Path("checked").exists() and time.monotonic() < deadline:
        time.sleep(0.05)  # the check of the watchdog runs meanwhile (a helper's own wait)
"""


def mapped_files(pid: int) -> str:
    """The files mapped into process ``pid`` (its loaded extension modules among them)."""
    return Path(f"/proc/{pid}/maps").read_text()


@pytest.mark.skipif(not HAVE_PIDFD, reason="the light watchdog needs pidfds (Linux 5.3+)")
def test_the_waiting_watchdog_has_loaded_neither_psutil_nor_ctypes(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_waiting=WAITING_TEST)
    run = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly"],
        cwd=pytester.path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for((pytester.path / "in-test").exists, timeout=60, what="the test to run")
        root = records_root(pytester)

        def forked() -> list[psutil.Process]:
            # Its launcher (the run's child, with the same command) forks it and exits.
            return [proc for proc in watchdogs_of(root) if proc.ppid() != run.pid]

        wait_for(lambda: bool(forked()), timeout=30, what="the watchdog to start")
        (watchdog,) = forked()
        assert "-S" in watchdog.cmdline()
        maps = mapped_files(watchdog.pid)
        assert "psutil" not in maps
        assert "_ctypes" not in maps
    finally:
        (pytester.path / "checked").write_text("yes")
        output, _ = run.communicate(timeout=120)
    assert run.returncode == 0, output
    assert not running(started_pid(pytester))
    wait_for(lambda: not watchdogs_of(records_root(pytester)), what="the watchdog to exit")


def test_without_pidfds_a_killed_run_still_has_its_process_stopped(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The portable paths (macOS, the BSDs): the watchdog checks the main process itself.
    monkeypatch.setenv(PORTABLE_VARIABLE, "1")
    kill_a_run(pytester, 'xprocess.ensure("server", Server)')
    pid = started_pid(pytester)
    wait_for(lambda: not running(pid), timeout=30, what="the managed process to be stopped")
    wait_for(lambda: not watchdogs_of(records_root(pytester)), what="the watchdog to exit")
    (log,) = (records_root(pytester) / ".runs").glob("*.killed.log")
    assert "was killed" in log.read_text()
