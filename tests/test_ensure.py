"""ensure(): starting, reusing, restarting, and reading readiness from the log.

These are the engine's behaviours, driven through ``XProcess(None, root)`` directly; a real
pytest run is used only where a second run (a process kept between runs) is the point.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.support import CHILD, HEADER, child_args, count_lines, running
from xprocess import ProcessExitedError, ProcessStarter, XProcess


@pytest.fixture
def xp(tmp_path: Path) -> Iterator[XProcess]:
    with XProcess(None, tmp_path / "records") as manager:
        yield manager
        for name in manager.store.names():
            manager.getinfo(name).terminate()


def starter(*flags: object, **attrs: Any) -> type[ProcessStarter]:
    attrs.setdefault("pattern", "ready")
    attrs.setdefault("args", child_args(*flags))
    return type("Starter", (ProcessStarter,), attrs)


def test_ensure_starts_the_process_and_returns_once_ready(xp: XProcess) -> None:
    pid, logpath = xp.ensure("srv", starter("--delay", 0.3, "--ready", "ready to serve"))
    assert "ready to serve" in Path(logpath).read_text()
    info = xp.getinfo("srv")
    assert info.pid == pid and info.isrunning()
    assert Path(info.logpath) == Path(logpath)


def test_each_ensure_gets_an_info_of_its_own_in_resources(xp: XProcess) -> None:
    """Reuse shares the paths of one record between calls, not the infos callers may change."""
    server = starter()
    first, log1 = xp.ensure("srv", server)
    again, log2 = xp.ensure("srv", server)
    assert first == again and log1 == log2
    one, two = (resource.info for resource in xp.resources[-2:])
    assert one is not two
    one.pid = None  # as a conftest may, to forget the process in that object
    assert one.pid is None and two.pid == first and two.isrunning()
    xp.getinfo("srv").terminate()
    third, _ = xp.ensure("srv", server)
    assert third != first and xp.resources[-1].info.pid == third


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


def test_restart_stops_the_running_process_and_starts_another(xp: XProcess, tmp_path: Path) -> None:
    server = starter("--count-file", tmp_path / "starts")
    first, _ = xp.ensure("srv", server)
    second, _ = xp.ensure("srv", server, restart=True)
    assert first != second
    assert not running(first)
    assert xp.getinfo("srv").isrunning()
    assert count_lines(tmp_path / "starts") == 2


def test_persisted_log_keeps_earlier_starts_and_fresh_log_does_not(xp: XProcess) -> None:
    first, second = starter("--ready", "ready first"), starter("--ready", "ready second")
    _, log = xp.ensure("srv", first)
    xp.ensure("srv", second, restart=True)
    text = Path(log).read_text()
    assert "ready first" in text and "ready second" in text
    xp.ensure("srv", first, restart=True, persist_logs=False)
    text = Path(log).read_text()
    assert "ready first" in text and "ready second" not in text


def test_a_restart_reads_only_the_new_part_of_a_persisted_log(xp: XProcess) -> None:
    """The old start's ready line must not satisfy the new start, which exits without it."""
    xp.ensure("srv", starter())
    with pytest.raises(ProcessExitedError, match="code 4"):
        xp.ensure("srv", starter("--ready", "crashing", "--exit-code", 4), restart=True)
    assert not xp.getinfo("srv").isrunning()


def test_the_child_runs_in_its_control_dir_and_its_own_session(xp: XProcess) -> None:
    pid, _ = xp.ensure("srv", starter())
    info = xp.getinfo("srv")
    assert Path(psutil.Process(pid).cwd()) == Path(info.controldir)
    assert os.getsid(pid) == pid != os.getsid(0)
    popen = xp.resources[-1].popen
    assert popen is not None and popen.pid == pid
    assert xp.proc_wait_timeout == 60  # pytest-xprocess's default


def test_args_items_are_passed_through_str(xp: XProcess) -> None:
    args = [Path(sys.executable), "-u", Path(CHILD), "--ready", 42]
    pid, _ = xp.ensure("srv", starter(pattern="^42$", args=args))
    assert psutil.Process(pid).cmdline()[-1] == "42"


def test_env_is_given_to_the_process(xp: XProcess) -> None:
    code = "import os, time; print('token=' + os.environ['TOKEN'], flush=True); time.sleep(60)"
    env = {**os.environ, "TOKEN": "abc"}
    xp.ensure("srv", starter(pattern="token=abc", env=env, args=[sys.executable, "-c", code]))
    assert xp.getinfo("srv").isrunning()


def test_pid_is_the_started_process(xp: XProcess) -> None:
    pid, _ = xp.ensure("srv", starter("--count-file", "starts"))
    assert (Path(xp.getinfo("srv").controldir) / "starts").read_text().split() == [str(pid)]
    assert (xp.rootdir / "srv" / "record.json").exists()
