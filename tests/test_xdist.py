"""Under pytest-xdist: one process per name for the whole run, shared by every worker."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

from tests.support import HEADER, count_lines, module_using, running, wait_for
from xprocess.manager import XProcessInfo


def records(pytester: pytest.Pytester) -> Path:
    return pytester.path / ".pytest_cache" / "d" / ".xprocess"


alive = running


def seen(pytester: pytest.Pytester) -> dict[str, set[str]]:
    """name -> the distinct 'pid port' pairs the tests saw, from the 'seen' file they append to."""
    result: dict[str, set[str]] = defaultdict(set)
    for line in (pytester.path / "seen").read_text().splitlines():
        worker, name, rest = line.split(" ", 2)
        result[name].add(rest)
        result["workers"].add(worker)
    return result


# Starters of a server on a free port that count their starts in starts-NAME, and note(), which
# each test calls to record what it saw in "seen": both from tests/helpers/projects.py.
SHARED = (
    HEADER
    + """
from projects import listening_server, note_seen

ROOT = Path(__file__).parent

def make(name, delay=0.0, at_end=False):
    return listening_server(ROOT / f"starts-{name}", delay=delay, at_end=at_end)

def note(name, xprocess):
    note_seen(ROOT / "seen", name, xprocess)
"""
)


def test_three_names_sixteen_tests_four_workers_start_each_once(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        SHARED
        + """
@pytest.fixture(scope="session", params=["alpha", "beta", "gamma"])
def server(request, xprocess):
    xprocess.ensure(request.param, make(request.param))
    return request.param
"""
    )
    pytester.makepyfile(
        """
import pytest
from conftest import note

@pytest.mark.parametrize("i", range(5))
def test_uses(server, xprocess, i):
    note(server, xprocess)

def test_last(server, xprocess):
    note(server, xprocess)
"""
    )
    result = pytester.runpytest_subprocess("-n", "4")
    result.assert_outcomes(passed=18)
    observed = seen(pytester)
    assert len(observed["workers"]) > 1
    for name in ("alpha", "beta", "gamma"):
        assert count_lines(pytester.path / f"starts-{name}") == 1
        assert len(observed[name]) == 1, observed[name]
        pid = int(next(iter(observed[name])).split()[0])
        assert XProcessInfo(records(pytester), name).pid == pid
    assert pytester.runpytest_subprocess("--xkill").ret == 0


def test_no_worker_runs_a_test_before_a_slow_process_is_ready(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        SHARED
        + """
@pytest.fixture(scope="session")
def slow(xprocess):
    xprocess.ensure("slow", make("slow", delay=1.0, at_end=True))
    # Ready means the line is in the log and the port accepts connections.
    assert "ready" in Path(xprocess.getinfo("slow").logpath).read_text()
    return "slow"
"""
    )
    pytester.makepyfile(module_using("slow", 16, note=True))
    pytester.runpytest_subprocess("-n", "4").assert_outcomes(passed=16)
    assert count_lines(pytester.path / "starts-slow") == 1
    assert len(seen(pytester)["slow"]) == 1


def test_a_failing_start_is_tried_once_and_every_worker_gets_its_error(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeconftest(
        HEADER
        + """
class Broken(ProcessStarter):
    pattern = "ready"
    args = child("--ready", "cannot bind", "--exit-code", 3, "--delay", 0.3,
                 "--count-file", Path(__file__).parent / "starts")

@pytest.fixture(scope="session")
def broken(xprocess):
    xprocess.ensure("broken", Broken)
"""
    )
    pytester.makepyfile(module_using("broken", 16))
    result = pytester.runpytest_subprocess("-n", "4")
    result.assert_outcomes(errors=16)
    assert count_lines(pytester.path / "starts") == 1
    errors = [
        line
        for line in result.stdout.lines
        if line.startswith("E ") and "ProcessExitedError" in line
    ]
    assert len(errors) >= 4
    assert len({line.split(":", 1)[1] for line in errors}) == 1, errors
    result.stdout.fnmatch_lines(["*'broken' exited with code 3 before it was ready*"])


def test_two_concurrent_runs_in_one_rootdir_start_once(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        SHARED
        + """
@pytest.fixture(scope="session")
def shared(xprocess):
    xprocess.ensure("shared", make("shared", delay=0.5))
    return "shared"
"""
    )
    pytester.makepyfile(
        "from conftest import note\ndef test_one(shared, xprocess):\n    note(shared, xprocess)\n"
    )
    runs = [
        subprocess.Popen(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly"],
            cwd=pytester.path,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for _ in range(2)
    ]
    outputs = [run.communicate(timeout=120)[0].decode() for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    assert count_lines(pytester.path / "starts-shared") == 1
    assert len(seen(pytester)["shared"]) == 1
    assert pytester.runpytest_subprocess("--xkill").ret == 0


def test_a_worker_killed_while_starting_does_not_block_the_others(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeconftest(
        HEADER
        + """
from projects import killed_once

ROOT = Path(__file__).parent
Starter = killed_once(ROOT)  # a worker dies holding the lock, mid-start

@pytest.fixture(scope="session")
def server(xprocess):
    xprocess.ensure("server", Starter)
"""
    )
    pytester.makepyfile(module_using("server", 8))
    result = pytester.runpytest_subprocess("-n", "2")
    result.assert_outcomes(passed=7, failed=1)  # the test whose worker was killed
    result.stdout.fnmatch_lines(["*worker 'gw*' crashed*"])
    starts = (pytester.path / "starts").read_text().split()
    assert len(starts) == 2
    abandoned, current = (int(pid) for pid in starts)
    assert not alive(abandoned), "the half-started process of the killed worker was left running"
    assert XProcessInfo(records(pytester), "server").pid == current
    assert pytester.runpytest_subprocess("--xkill").ret == 0


def run_killed_mid_start(pytester: pytest.Pytester) -> None:
    """Run a test that ensures 'server' with the conftest's Starter, which kills the run."""
    pytester.makepyfile(
        "from conftest import Starter\ndef test_it(xprocess):\n"
        "    xprocess.ensure('server', Starter)\n"
    )
    crashed = subprocess.run(
        [sys.executable, "-m", "pytest", "-q"],
        cwd=pytester.path,
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert crashed.returncode == -signal.SIGKILL


def test_an_abandoned_start_is_shown_and_stopped_by_xkill(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        HEADER
        + """
import signal

class Starter(ProcessStarter):
    pattern = "ready"
    args = child("--count-file", Path(__file__).parent / "starts")
    def startup_check(self):
        os.kill(os.getpid(), signal.SIGKILL)
"""
    )
    run_killed_mid_start(pytester)
    result = pytester.runpytest_subprocess("--xshow")
    result.stdout.fnmatch_lines(["server *STARTING *"])
    result = pytester.runpytest_subprocess("--xkill")
    result.stdout.fnmatch_lines(["* server TERMINATED"])


AT_END = (
    SHARED
    + """
@pytest.fixture(scope="session")
def server(xprocess):
    xprocess.ensure("server", make("server", at_end=AT_END))
    return "server"
"""
)


@pytest.mark.parametrize("workers", [[], ["-n", "4"]], ids=["no-xdist", "n4"])
def test_terminate_at_end_stops_the_process_after_the_whole_run(
    pytester: pytest.Pytester, workers: list[str]
) -> None:
    pytester.makeconftest("AT_END = True\n" + AT_END)
    pytester.makepyfile(
        module_using("server", 12, note=True, check="assert xprocess.getinfo(server).isrunning()")
    )
    pytester.runpytest_subprocess(*workers).assert_outcomes(passed=12)
    (pid,) = (int(pid) for pid in (pytester.path / "starts-server").read_text().split())
    assert not alive(pid)
    assert not XProcessInfo(records(pytester), "server").isrunning()


def test_without_terminate_at_end_the_process_outlives_the_run(pytester: pytest.Pytester) -> None:
    pytester.makeconftest("AT_END = False\n" + AT_END)
    pytester.makepyfile(
        "from conftest import note\ndef test_uses(server, xprocess):\n    note(server, xprocess)\n"
    )
    pytester.runpytest_subprocess("-n", "2").assert_outcomes(passed=1)
    (pid,) = (int(pid) for pid in (pytester.path / "starts-server").read_text().split())
    assert alive(pid)
    pytester.runpytest_subprocess("-n", "2").assert_outcomes(passed=1)
    assert count_lines(pytester.path / "starts-server") == 1
    assert len(seen(pytester)["server"]) == 1
    assert pytester.runpytest_subprocess("--xkill").ret == 0
    wait_for(lambda: not alive(pid), what="the server to be gone after --xkill")


def test_terminate_at_end_waits_for_the_last_worker_not_the_first(
    pytester: pytest.Pytester,
) -> None:
    """A worker's session can end while others still run: the stop belongs to the controller."""
    pytester.makeconftest(
        "AT_END = True\n"
        + AT_END
        + """
def pytest_unconfigure(config):
    # After every sessionfinish hook of this worker, xprocess's included: a worker that stopped
    # the process at its own end would have done so by now.
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker:
        (ROOT / f"finished-{worker}").write_text("")
"""
    )
    pytester.makepyfile(
        """
import os, time
import pytest
from conftest import ROOT, note

@pytest.mark.xdist_group("early")
def test_early(server, xprocess):
    note(server, xprocess)

@pytest.mark.xdist_group("late")
def test_late(server, xprocess):
    me = os.environ["PYTEST_XDIST_WORKER"]
    deadline = time.monotonic() + 60
    while not [p for p in ROOT.glob("finished-*") if p.name != f"finished-{me}"]:
        assert time.monotonic() < deadline, "the other worker never finished"
        time.sleep(0.01)
    # The other worker is done, end-of-session hooks and all; the process must still serve us.
    note(server, xprocess)
    assert xprocess.getinfo(server).isrunning()
"""
    )
    pytester.runpytest_subprocess("-n", "2", "--dist", "loadgroup").assert_outcomes(passed=2)
    (pid,) = (int(pid) for pid in (pytester.path / "starts-server").read_text().split())
    assert not alive(pid)


def test_a_starter_whose_args_fail_is_tried_once_for_all_workers(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeconftest(
        HEADER
        + """
class Starter(ProcessStarter):
    pattern = "ready"
    def args(self):
        with open(Path(__file__).parent / "attempts", "a") as f:
            f.write("attempt\\n")
        raise RuntimeError("initdb failed: disk full")

@pytest.fixture(scope="session")
def server(xprocess):
    xprocess.ensure("server", Starter)
"""
    )
    pytester.makepyfile(module_using("server", 8))
    result = pytester.runpytest_subprocess("-n", "4")
    result.assert_outcomes(errors=8)
    assert count_lines(pytester.path / "attempts") == 1
    result.stdout.fnmatch_lines(["E * RuntimeError: initdb failed: disk full"])


def test_restart_under_xdist_restarts_once_for_the_run(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        SHARED
        + """
@pytest.fixture(scope="session")
def server(xprocess):
    xprocess.ensure("server", make("server", delay=0.2, at_end=True), restart=True)
    return "server"
"""
    )
    pytester.makepyfile(module_using("server", 16, note=True))
    pytester.runpytest_subprocess("-n", "4").assert_outcomes(passed=16)
    assert count_lines(pytester.path / "starts-server") == 1
    assert len(seen(pytester)["server"]) == 1


def test_without_plugin_autoload_xdist_workers_still_share_one_run(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    pytester.makeconftest("AT_END = True\n" + AT_END)
    pytester.makepyfile(module_using("server", 8, note=True))
    result = pytester.runpytest_subprocess("-p", "xdist.plugin", "-p", "xprocess.plugin", "-n", "2")
    result.assert_outcomes(passed=8)
    (pid,) = (int(pid) for pid in (pytester.path / "starts-server").read_text().split())
    assert not alive(pid), "terminate_at_end did not stop it: the workers had their own run ids"


def test_a_process_two_runs_use_stops_when_the_last_of_them_ends(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeconftest("AT_END = True\n" + AT_END)
    pytester.makepyfile(
        test_long="""
import time
from conftest import ROOT, note

def test_long(server, xprocess):
    note(server, xprocess)
    (ROOT / "long-started").write_text("")
    deadline = time.monotonic() + 60
    while not (ROOT / "go-on").exists():
        assert time.monotonic() < deadline, "never told to go on"
        time.sleep(0.01)
    note(server, xprocess)
""",
        test_short="from conftest import note\ndef test_short(server, xprocess):\n"
        "    note(server, xprocess)\n",
    )
    long_run = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-q", "test_long.py"],
        cwd=pytester.path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for((pytester.path / "long-started").exists, timeout=60, what="the long run")
        pytester.runpytest_subprocess("test_short.py").assert_outcomes(passed=1)
        (pid,) = (int(pid) for pid in (pytester.path / "starts-server").read_text().split())
        assert alive(pid), "the short run stopped a process the long run still uses"
    finally:
        (pytester.path / "go-on").write_text("")
        output = long_run.communicate(timeout=120)[0].decode()
    assert long_run.returncode == 0, output
    assert count_lines(pytester.path / "starts-server") == 1
    assert not alive(pid)


def test_the_run_after_a_crashed_start_starts_cleanly(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        HEADER
        + """
from projects import killed_once

ROOT = Path(__file__).parent
Starter = killed_once(ROOT)  # the whole run dies mid-start
"""
    )
    run_killed_mid_start(pytester)
    pytester.runpytest_subprocess().assert_outcomes(passed=1)
    abandoned, current = (int(pid) for pid in (pytester.path / "starts").read_text().split())
    assert not alive(abandoned)
    assert XProcessInfo(records(pytester), "server").pid == current
    assert pytester.runpytest_subprocess("--xkill").ret == 0
