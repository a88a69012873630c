"""terminate(): whole trees, leaves first, SIGKILL for what ignores SIGTERM, never a stranger."""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from tests.support import child_args, running, wait_for
from xprocess import ProcessStarter, XProcess
from xprocess.commands import kill, show
from xprocess.liveness import identify


@pytest.fixture
def xp(tmp_path: Path) -> XProcess:
    return XProcess(None, tmp_path / "records")


def starter(*flags: object) -> type[ProcessStarter]:
    return type("Starter", (ProcessStarter,), {"pattern": "ready", "args": child_args(*flags)})


def test_terminate_stops_the_process_and_all_its_children(xp: XProcess) -> None:
    pid, _ = xp.ensure("srv", starter("--children", 3))
    wait_for(lambda: len(psutil.Process(pid).children()) == 3, what="3 children")
    tree = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    assert xp.getinfo("srv").terminate() == 1
    assert not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in tree)
    assert not xp.getinfo("srv").isrunning()


def test_terminate_without_the_tree_leaves_the_children(xp: XProcess) -> None:
    pid, _ = xp.ensure("srv", starter("--children", 1))
    wait_for(lambda: len(psutil.Process(pid).children()) == 1, what="a child")
    kid = psutil.Process(pid).children()[0]
    try:
        assert xp.getinfo("srv").terminate(kill_proc_tree=False) == 1
        assert kid.is_running()
        # The child it chose to leave carries the start's token: it does not keep "srv" alive.
        assert not xp.getinfo("srv").isrunning()
        lines: list[str] = []
        show([xp.rootdir], lines.append)
        assert lines[1].split()[:3] == ["srv", str(pid), "DEAD"]
    finally:
        kid.kill()
        kid.wait(5)


def test_a_server_killed_while_its_child_lives_is_dead_and_started_again(xp: XProcess) -> None:
    pid, _ = xp.ensure("srv", starter("--children", 1))
    wait_for(lambda: len(psutil.Process(pid).children()) == 1, what="a child")
    kid = psutil.Process(pid).children()[0]
    try:
        os.kill(pid, signal.SIGKILL)  # unreaped by this process, which started it
        wait_for(lambda: not running(pid), what="the server to die")
        assert kid.is_running()
        assert not xp.getinfo("srv").isrunning()
        second, _ = xp.ensure("srv", starter())
        assert second != pid
        assert not running(kid.pid), "what the crashed server left is stopped before a start"
    finally:
        with contextlib.suppress(psutil.Error):
            kid.kill()
    assert xp.getinfo("srv").terminate() == 1


def test_a_process_that_ignores_sigterm_is_killed_after_the_timeout(xp: XProcess) -> None:
    pid, _ = xp.ensure("srv", starter("--ignore-term"))
    assert xp.getinfo("srv").terminate(timeout=0.2) == 1
    assert not xp.getinfo("srv").isrunning()
    assert not running(pid)


def test_terminate_with_nothing_running_returns_zero(xp: XProcess) -> None:
    assert xp.getinfo("never-started").terminate() == 0
    xp.ensure("srv", starter())
    assert xp.getinfo("srv").terminate() == 1
    assert xp.getinfo("srv").terminate() == 0


def test_a_recycled_pid_is_reported_dead_and_never_signalled(
    xp: XProcess, stranger: subprocess.Popen[bytes]
) -> None:
    xp.ensure("srv", starter())
    xp.getinfo("srv").terminate()
    # The pid of the recorded process now belongs to an unrelated process.
    record_path = xp.rootdir / "srv" / "record.json"
    record = json.loads(record_path.read_text())
    identity = identify(stranger.pid)
    assert identity is not None
    record.update(
        pid=stranger.pid,
        create_time=identity.create_time - 1000,
        start_since_boot=None if identity.since_boot is None else identity.since_boot - 1000,
    )
    record_path.write_text(json.dumps(record))

    assert not xp.getinfo("srv").isrunning()
    assert xp.getinfo("srv").terminate() == 0
    lines: list[str] = []
    show([xp.rootdir], lines.append)
    assert lines[1].split()[:3] == ["srv", str(stranger.pid), "DEAD"]
    lines.clear()
    assert kill([xp.rootdir], lines.append) == 0
    assert lines == [f"{stranger.pid} srv NO PROCESS FOUND"]
    assert stranger.poll() is None, "the stranger was signalled"


def test_a_worker_restarted_during_termination_is_stopped_too(xp: XProcess) -> None:
    supervisor = Path(__file__).parent / "helpers" / "supervisor.py"
    args = [sys.executable, "-u", str(supervisor)]
    pid, _ = xp.ensure("srv", type("S", (ProcessStarter,), {"pattern": "ready", "args": args}))
    session = [p for p in psutil.process_iter() if _sid(p.pid) == pid]
    assert len(session) == 2
    assert xp.getinfo("srv").terminate(timeout=0.5) == 1
    assert [p.pid for p in psutil.process_iter() if _alive_in_session(p, pid)] == []


def _sid(pid: int) -> int:
    try:
        return os.getsid(pid)
    except OSError:
        return -1


def _alive_in_session(proc: psutil.Process, sid: int) -> bool:
    try:
        return _sid(proc.pid) == sid and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _exited(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_a_daemon_left_by_a_launcher_that_exited_is_stopped(xp: XProcess, tmp_path: Path) -> None:
    """Like ``pg_ctl start``: the launcher prints its ready line and exits, the daemon stays."""
    pidfile = tmp_path / "daemon.pid"
    daemon = shlex.join(child_args("--count-file", pidfile, "--ready", "daemon up"))
    launcher = ["/bin/sh", "-c", f"{daemon} > /dev/null & echo launched"]
    xp.ensure("srv", type("S", (ProcessStarter,), {"pattern": "launched", "args": launcher}))
    wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), what="the daemon")
    daemon_pid = int(pidfile.read_text().split()[0])
    launcher_popen = xp.resources[-1].popen
    assert launcher_popen is not None
    # Waited for without reaping it (poll() would): what reaps it is xprocess's own release,
    # which hands the record to the daemon; until then the exited launcher stands for it.
    wait_for(lambda: _exited(launcher_popen.pid), what="the launcher to exit")
    assert xp.getinfo("srv").isrunning(), "the daemon carrying the start's token runs"
    assert xp.getinfo("srv").terminate() == 1
    assert not running(daemon_pid)
    assert xp.getinfo("srv").terminate() == 0


def test_a_daemon_that_left_the_tree_but_not_the_session_is_stopped(
    xp: XProcess, tmp_path: Path
) -> None:
    """The root stays alive; its grandchild was re-parented away, out of reach of a tree walk."""
    pidfile = tmp_path / "daemon.pid"
    daemon = shlex.join(child_args("--count-file", pidfile, "--ready", "daemon up"))
    root = ["/bin/sh", "-c", f"({daemon} > /dev/null &); echo ready; exec sleep 600"]
    pid, _ = xp.ensure("srv", type("S", (ProcessStarter,), {"pattern": "ready", "args": root}))
    wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), what="the daemon")
    daemon_pid = int(pidfile.read_text().split()[0])
    assert daemon_pid not in [p.pid for p in psutil.Process(pid).children(recursive=True)]
    assert xp.getinfo("srv").terminate() == 1
    assert not running(daemon_pid)


STUBBORN = """
import signal, sys, time
from pathlib import Path

def note(signum, frame):
    Path(sys.argv[1]).write_text("got SIGTERM")  # and lives on

signal.signal(signal.SIGTERM, note)
Path(sys.argv[2]).write_text(str(os.getpid()))
print("ready", flush=True)
while True:
    time.sleep(1)
"""


def test_ctrl_c_while_the_run_stops_its_processes_kills_what_is_left_in_one_line(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(stubborn="import os\n" + STUBBORN)
    pytester.makeconftest(
        """
import sys
from pathlib import Path
import pytest
from xprocess import ProcessStarter

ROOT = Path(__file__).parent

class Stubborn(ProcessStarter):
    pattern = "ready"
    terminate_at_end = True
    args = [sys.executable, ROOT / "stubborn.py", ROOT / "got-term", ROOT / "pid"]

@pytest.fixture
def server(xprocess):
    return xprocess.ensure("stubborn", Stubborn)[0]
"""
    )
    pytester.makepyfile("def test_uses(server):\n    pass\n")
    run = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-p", "no:randomly"],
        cwd=pytester.path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        # The end of the run sent SIGTERM, which the server ignores: the grace period runs.
        wait_for(lambda: (pytester.path / "got-term").exists() or run.poll() is not None, 60)
        os.kill(run.pid, signal.SIGINT)
        output, _ = run.communicate(timeout=15)  # well within the 20 s grace period
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    text = output.decode()
    server = int((pytester.path / "pid").read_text())
    assert not running(server), text
    assert text.count("interrupted while stopping processes: SIGKILL for what is left") == 1
    assert "Traceback" not in text and "KeyboardInterrupt" not in text, text
