"""Shared fixtures: the helper child process, and a check that no test leaves a process behind."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from xprocess.manager import XProcessInfo
from xprocess.records import RecordStore

HELPERS = Path(__file__).parent / "helpers"
CHILD = HELPERS / "child.py"


def child_args(*flags: object) -> list[str]:
    """The command line of the helper child with ``flags``."""
    return [sys.executable, "-u", str(CHILD), *(str(f) for f in flags)]


def records_roots(base: Path) -> list[Path]:
    return [base / ".pytest_cache" / "d" / ".xprocess", base / ".xprocess"]


def live_records(base: Path) -> list[XProcessInfo]:
    live = []
    for root in records_roots(base):
        for name, record in RecordStore(root).records():
            info = XProcessInfo(root, name, record)
            if info.isrunning():
                live.append(info)
    return live


@pytest.fixture(autouse=True)
def _no_process_left(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail a test that leaves a recorded process running (and stop it, so the next is clean)."""
    base = request.getfixturevalue("pytester").path if "pytester" in request.fixturenames else None
    tmp = request.getfixturevalue("tmp_path") if "tmp_path" in request.fixturenames else None
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    yield
    leaked: list[str] = []
    if base is not None:
        for info in live_records(base):
            leaked.append(f"{info.name} (pid {info.pid})")
            info.terminate(timeout=2)
    for proc in psutil.Process().children(recursive=True):
        if proc.pid not in before and _alive(proc):
            leaked.append(f"child {proc.pid} {' '.join(_cmdline(proc))}")
            proc.kill()
    # Processes that were re-parented away from us but still work in the test's directories.
    for directory in (d for d in (base, tmp) if d is not None):
        for proc in _working_in(directory):
            leaked.append(f"process {proc.pid} in {directory}: {' '.join(_cmdline(proc))}")
            proc.kill()
    assert not leaked, f"the test left processes behind: {leaked}"


def _working_in(directory: Path) -> list[psutil.Process]:
    prefix = str(directory.resolve())
    me = psutil.Process()
    ours = {me.pid, *(p.pid for p in me.parents())}
    found = []
    for proc in psutil.process_iter():
        if proc.pid in ours:  # pytester runs tests in its directory, in this very process
            continue
        try:
            cwd = proc.cwd()
        except (psutil.Error, OSError):
            continue
        if (cwd == prefix or cwd.startswith(prefix + "/")) and _alive(proc):
            found.append(proc)
    return found


def running(pid: int) -> bool:
    """Whether ``pid`` is a live process (an exited, unreaped one does not count)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _cmdline(proc: psutil.Process) -> list[str]:
    try:
        return proc.cmdline()
    except psutil.Error:
        return []


def wait_for(condition: Callable[[], object], timeout: float = 10.0, what: str = "") -> None:
    """Wait until ``condition()`` is true, polling with a short back-off, or fail at ``timeout``."""
    deadline = time.monotonic() + timeout
    delay = 0.001
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what or condition}")
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


@pytest.fixture
def child() -> Callable[..., list[str]]:
    return child_args
