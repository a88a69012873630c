"""ensure(): starting, reusing, restarting, and reading readiness from the log."""

from __future__ import annotations

import os

import pytest

from tests.support import HEADER, count_lines, running


def test_ensure_starts_the_process_and_returns_once_ready(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        HEADER
        + """
class Starter(ProcessStarter):
    pattern = "ready"
    args = child("--delay", 0.3, "--ready", "ready to serve")

def test_start(xprocess):
    pid, logpath = xprocess.ensure("srv", Starter)
    assert "ready to serve" in Path(logpath).read_text()
    info = xprocess.getinfo("srv")
    assert info.pid == pid and info.isrunning()
    assert Path(info.logpath) == Path(logpath)
    info.terminate()
"""
    )
    pytester.runpytest().assert_outcomes(passed=1)


def test_a_second_run_reuses_the_running_process(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        HEADER
        + """
class Starter(ProcessStarter):
    pattern = "ready"
    args = child("--count-file", Path.cwd() / "starts")

def test_start(xprocess):
    pid, _ = xprocess.ensure("srv", Starter)
    (Path.cwd() / "pids").open("a").write(f"{pid}\\n")
"""
    )
    pytester.runpytest_subprocess().assert_outcomes(passed=1)
    pytester.runpytest_subprocess().assert_outcomes(passed=1)
    pids = (pytester.path / "pids").read_text().split()
    assert len(pids) == 2 and pids[0] == pids[1]
    assert count_lines(pytester.path / "starts") == 1
    assert running(int(pids[0]))
    pytester.runpytest_subprocess("--xkill").stdout.fnmatch_lines([f"{pids[0]} srv TERMINATED"])


def test_restart_stops_the_running_process_and_starts_another(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        HEADER
        + """
class Starter(ProcessStarter):
    pattern = "ready"
    args = child("--count-file", Path.cwd() / "starts")

import psutil

def running(pid):
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False

def test_restart(xprocess):
    first, _ = xprocess.ensure("srv", Starter)
    second, _ = xprocess.ensure("srv", Starter, restart=True)
    assert first != second
    assert not running(first)
    assert xprocess.getinfo("srv").isrunning()
    xprocess.getinfo("srv").terminate()
"""
    )
    pytester.runpytest().assert_outcomes(passed=1)
    assert count_lines(pytester.path / "starts") == 2


def test_persisted_log_keeps_earlier_starts_and_fresh_log_does_not(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        HEADER
        + """
class First(ProcessStarter):
    pattern = "ready"
    args = child("--ready", "ready first")

class Second(ProcessStarter):
    pattern = "ready"
    args = child("--ready", "ready second")

def test_logs(xprocess):
    _, log = xprocess.ensure("srv", First)
    xprocess.ensure("srv", Second, restart=True)
    text = Path(log).read_text()
    assert "ready first" in text and "ready second" in text
    xprocess.ensure("srv", First, restart=True, persist_logs=False)
    text = Path(log).read_text()
    assert "ready first" in text and "ready second" not in text
    xprocess.getinfo("srv").terminate()
"""
    )
    pytester.runpytest().assert_outcomes(passed=1)


def test_a_restart_reads_only_the_new_part_of_a_persisted_log(pytester: pytest.Pytester) -> None:
    """The old start's ready line must not satisfy the new start, which exits without it."""
    pytester.makepyfile(
        HEADER
        + """
from xprocess import ProcessExitedError

class Good(ProcessStarter):
    pattern = "ready"
    args = child()

class Broken(ProcessStarter):
    pattern = "ready"
    args = child("--ready", "crashing", "--exit-code", 4)

def test_restart(xprocess):
    xprocess.ensure("srv", Good)
    with pytest.raises(ProcessExitedError, match="code 4"):
        xprocess.ensure("srv", Broken, restart=True)
    assert not xprocess.getinfo("srv").isrunning()
"""
    )
    pytester.runpytest().assert_outcomes(passed=1)


def test_the_child_runs_in_its_control_dir_and_its_own_session(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        HEADER
        + """
import psutil

class Starter(ProcessStarter):
    pattern = "ready"
    args = child()

def test_child(xprocess):
    pid, _ = xprocess.ensure("srv", Starter)
    info = xprocess.getinfo("srv")
    proc = psutil.Process(pid)
    assert Path(proc.cwd()) == Path(info.controldir)
    assert os.getsid(pid) == pid != os.getsid(0)
    assert xprocess.resources[-1].popen.pid == pid
    assert xprocess.proc_wait_timeout == 60  # pytest-xprocess's default
    info.terminate()
"""
    )
    pytester.runpytest().assert_outcomes(passed=1)


def test_args_items_are_passed_through_str(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        HEADER
        + """
class Starter(ProcessStarter):
    pattern = "^42$"
    args = [Path(sys.executable), "-u", Path(CHILD), "--ready", 42]

def test_args(xprocess):
    xprocess.ensure("srv", Starter)
    xprocess.getinfo("srv").terminate()
"""
    )
    pytester.runpytest().assert_outcomes(passed=1)


def test_env_is_given_to_the_process(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        HEADER
        + """
class Starter(ProcessStarter):
    pattern = "token=abc"
    env = {**os.environ, "TOKEN": "abc"}
    args = [sys.executable, "-c", "import os, time; print('token=' + os.environ['TOKEN'], "
            "flush=True); time.sleep(60)"]

def test_env(xprocess):
    xprocess.ensure("srv", Starter)
    xprocess.getinfo("srv").terminate()
"""
    )
    pytester.runpytest().assert_outcomes(passed=1)


def test_pid_is_the_started_process(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        HEADER
        + """
class Starter(ProcessStarter):
    pattern = "ready"
    args = child("--count-file", "starts")

def test_pid(xprocess):
    pid, _ = xprocess.ensure("srv", Starter)
    assert (Path(xprocess.getinfo("srv").controldir) / "starts").read_text().split() == [str(pid)]
    xprocess.getinfo("srv").terminate()
"""
    )
    pytester.runpytest().assert_outcomes(passed=1)
    assert os.path.exists(
        pytester.path / ".pytest_cache" / "d" / ".xprocess" / "srv" / "record.json"
    )
