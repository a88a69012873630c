"""Shared fixtures: the helper child process, and a check that no test leaves a process behind."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator

import psutil
import pytest

from tests.support import child_args, cmdline_of, is_live, live_records, working_in


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
        if proc.pid not in before and is_live(proc):
            leaked.append(f"child {proc.pid} {' '.join(cmdline_of(proc))}")
            proc.kill()
    # Processes that were re-parented away from us but still work in the test's directories.
    for directory in (d for d in (base, tmp) if d is not None):
        for proc in working_in(directory):
            leaked.append(f"process {proc.pid} in {directory}: {' '.join(cmdline_of(proc))}")
            proc.kill()
    assert not leaked, f"the test left processes behind: {leaked}"


@pytest.fixture(autouse=True)
def _asyncio_loop_scope(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Give the projects pytester runs the loop scope pytest-asyncio (a dev dependency, for the
    async server fixtures) warns about when unset: the warning would land in every run."""
    if "pytester" in request.fixturenames:
        request.getfixturevalue("pytester")  # it clears PYTEST_ADDOPTS when it sets up
        monkeypatch.setenv("PYTEST_ADDOPTS", "-o asyncio_default_fixture_loop_scope=function")


@pytest.fixture
def child() -> Callable[..., list[str]]:
    return child_args


@pytest.fixture
def stranger() -> Iterator[subprocess.Popen[bytes]]:
    """A live process xprocess did not start, in our own session: what a recycled pid, or a
    planted record, may point at."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    yield proc
    proc.kill()
    proc.wait()
