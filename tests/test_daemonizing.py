"""Launchers that daemonize (fork, exit 0): the daemon they leave is the started process."""

from __future__ import annotations

import os
import pwd
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.support import child_args, running, wait_for
from xprocess import ProcessExitedError, ProcessStarter, StartupTimeoutError, XProcess, free_port


@pytest.fixture
def xp(tmp_path: Path) -> XProcess:
    return XProcess(None, tmp_path / "records")


def launcher(script: str, **attrs: object) -> type[ProcessStarter]:
    return type(
        "Launcher",
        (ProcessStarter,),
        {"pattern": "daemon ready", "args": ["/bin/sh", "-c", script], **attrs},
    )


def stripped(*flags: object) -> str:
    """The helper child as a daemon that carries no token: an empty environment (``env -i``) and
    no inherited descriptor beyond 0-2, as a server that rewrites its title and closes fds."""
    closer = "import os, sys; os.closerange(3, 65536); os.execv(sys.argv[1], sys.argv[1:])"
    return "env -i " + shlex.join([sys.executable, "-c", closer, *child_args(*flags)])


def with_arg(arg: str) -> list[psutil.Process]:
    """Live processes whose command line holds ``arg``."""
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        if arg in (proc.info["cmdline"] or []) and proc.info["status"] != psutil.STATUS_ZOMBIE:
            found.append(proc)
    return found


def test_a_launcher_that_exits_0_before_ready_hands_over_to_its_daemon(
    xp: XProcess, tmp_path: Path
) -> None:
    pidfile = tmp_path / "daemon.pid"
    daemon = shlex.join(
        child_args("--count-file", pidfile, "--delay", 0.3, "--ready", "daemon ready")
    )
    pid, _ = xp.ensure("srv", launcher(f"{daemon} & exit 0"))
    assert pid == int(pidfile.read_text())
    info = xp.getinfo("srv")
    assert info.pid == pid and info.isrunning()
    assert info.terminate() == 1
    assert not running(pid)


def test_a_daemon_without_the_token_is_found_in_the_launchers_session(
    xp: XProcess, tmp_path: Path
) -> None:
    pidfile = tmp_path / "daemon.pid"
    daemon = stripped("--count-file", pidfile, "--delay", 0.3, "--ready", "daemon ready")
    pid, _ = xp.ensure("srv", launcher(f"{daemon} & exit 0"))
    assert pid == int(pidfile.read_text())
    assert xp.getinfo("srv").isrunning()
    assert xp.getinfo("srv").terminate() == 1
    assert not running(pid)


def test_a_launcher_that_exits_non_zero_fails_at_once_and_its_daemon_is_stopped(
    xp: XProcess, tmp_path: Path
) -> None:
    mark = str(tmp_path / "daemon-mark")
    daemon = shlex.join(child_args("--count-file", mark, "--delay", 30))
    with pytest.raises(ProcessExitedError, match="exited with code 3"):
        xp.ensure("srv", launcher(f"{daemon} & exit 3"))
    assert with_arg(mark) == []


def test_a_launcher_that_exits_0_leaving_nothing_says_what_cannot_be_followed(
    xp: XProcess,
) -> None:
    with pytest.raises(
        ProcessExitedError,
        match=r"(?s)exited with code 0 before it was ready.*"
        r"run the\s+server in the foreground",
    ) as failure:
        xp.ensure("srv", launcher("echo starting; exit 0"))
    assert "starting" in str(failure.value)


def test_a_daemon_that_exits_before_ready_fails_the_start(xp: XProcess) -> None:
    daemon = shlex.join(child_args("--ready", "not yet", "--exit-code", 0))
    with pytest.raises(ProcessExitedError, match=r"it daemonized\), and every process it left"):
        xp.ensure("srv", launcher(f"sleep 0.2; {daemon} & exit 0"))


def test_redis_started_in_the_background_by_a_script_is_managed(xp: XProcess) -> None:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed: apt-get install redis-server")
    port = free_port()
    script = f"redis-server --port {port} --save '' --appendonly no & exit 0"
    pid, _ = xp.ensure("redis", launcher(script, pattern="Ready to accept connections"))
    assert "redis-server" in psutil.Process(pid).name()
    assert xp.getinfo("redis").isrunning()
    assert xp.getinfo("redis").terminate() == 1
    wait_for(lambda: not running(pid), what="redis to exit")


def test_redis_that_daemonizes_itself_is_managed(xp: XProcess) -> None:
    """``--daemonize yes``: it forks, calls setsid() and rewrites its environment."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed: apt-get install redis-server")
    args = ["redis-server", "--port", free_port(), "--daemonize", "yes", "--save", ""]
    args += ["--logfile", "xprocess.log"]  # relative to its working directory, the control dir
    starter = type(
        "Redis", (ProcessStarter,), {"pattern": "Ready to accept connections", "args": args}
    )
    pid, _ = xp.ensure("redis", starter)
    assert "redis-server" in psutil.Process(pid).name()
    assert os.getsid(pid) == pid, "it left the launcher's session"
    assert xp.getinfo("redis").isrunning()
    assert xp.getinfo("redis").terminate() == 1
    assert not running(pid)


POSTGRES_BIN = Path("/usr/lib/postgresql/15/bin")


@pytest.fixture
def pg_datadir() -> Iterator[tuple[Path, dict[str, object]]]:
    """An initialised PostgreSQL data directory, owned by the user the server will run as."""
    bindir = Path(shutil.which("pg_ctl") or POSTGRES_BIN / "pg_ctl").parent
    if not (bindir / "initdb").is_file():
        pytest.skip("PostgreSQL is not installed: apt-get install postgresql")
    user: dict[str, object] = {}
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("as root, PostgreSQL needs a 'postgres' user to run as")
        user = {"user": "postgres", "cwd": "/"}
    datadir = Path(tempfile.mkdtemp(prefix="xprocess-pg-"))
    if user:
        shutil.chown(datadir, "postgres")
    done = subprocess.run(
        [str(bindir / "initdb"), "-D", str(datadir), "--auth=trust", "--no-sync"],
        capture_output=True,
        text=True,
        check=False,
        **user,  # type: ignore[call-overload]
    )
    assert done.returncode == 0, done.stderr
    yield datadir, {"bindir": bindir, **user}
    shutil.rmtree(datadir, ignore_errors=True)


def test_pg_ctl_start_is_managed(xp: XProcess, pg_datadir: tuple[Path, dict[str, object]]) -> None:
    """``pg_ctl start`` forks, calls setsid() and exits; the postmaster rewrites its title."""
    datadir, options = pg_datadir
    bindir = options.pop("bindir")
    assert isinstance(bindir, Path)
    server_options = f"-p {free_port()} -k {datadir} -c listen_addresses=''"
    args = [bindir / "pg_ctl", "start", "-W", "-D", datadir, "-o", server_options]
    starter = type(
        "PgCtl",
        (ProcessStarter,),
        {"pattern": "ready to accept connections", "args": args, "popen_kwargs": options},
    )
    pid, _ = xp.ensure("pg", starter)
    assert psutil.Process(pid).name() == "postgres"
    workers = psutil.Process(pid).children()
    assert workers, "no background workers seen"
    assert xp.getinfo("pg").isrunning()
    assert xp.getinfo("pg").terminate() == 1
    assert not running(pid)
    assert not any(running(w.pid) for w in workers)


def test_a_daemon_without_the_token_that_never_gets_ready_is_stopped(
    xp: XProcess, tmp_path: Path
) -> None:
    pidfile = tmp_path / "daemon.pid"
    daemon = stripped("--count-file", pidfile, "--delay", 0.3, "--ready", "not this")
    with pytest.raises(StartupTimeoutError):
        xp.ensure("srv", launcher(f"{daemon} & exit 0", timeout=1))
    assert not running(int(pidfile.read_text()))
