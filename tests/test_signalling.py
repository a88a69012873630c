"""Who xprocess signals: what it started (the recorded process, what carries the start's token,
their descendants), never a stranger, pid 1, the current process or its ancestors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests.support import HELPERS, child_args, namespaces_or_skip, running, wait_for
from xprocess import ProcessStarter, RecordWarning, XProcess, termination, tokens
from xprocess.capabilities import HAVE_PROC_STAT
from xprocess.commands import kill
from xprocess.liveness import BOOT_ID, identify


@pytest.fixture
def xp(tmp_path: Path) -> XProcess:
    return XProcess(None, tmp_path / "records")


def starter(*flags: object, **attrs: object) -> type[ProcessStarter]:
    return type(
        "Starter", (ProcessStarter,), {"pattern": "ready", "args": child_args(*flags), **attrs}
    )


def plant(root: Path, name: str, pid: int, **fields: object) -> Path:
    """A record of ``name`` naming ``pid`` with its true start time."""
    identity = identify(pid)
    assert identity is not None
    record = {
        "name": name,
        "pid": pid,
        "create_time": identity.create_time,
        "start_since_boot": identity.since_boot,
        "argv": ["x"],
        "cwd": str(root / name),
        "logpath": str(root / name / "xprocess.log"),
        "log_offset": 0,
        "started_at": 0.0,
        "state": "ready",
        **fields,
    }
    (root / name).mkdir(parents=True, exist_ok=True)
    path = root / name / "record.json"
    path.write_text(json.dumps(record))
    return path


def run_helper(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=60, env=env, check=False)


PID_NAMESPACE = ("--pid", "--fork", "--mount-proc")


def run_helper_as_pid_1(
    *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``run_helper`` in a PID namespace of its own, where the command is pid 1 (skips unless
    ``unshare`` may make one here)."""
    namespaces_or_skip(*PID_NAMESPACE)
    return run_helper("unshare", *PID_NAMESPACE, *args, env=env)


def test_a_stranger_that_reused_the_pid_and_left_a_daemon_is_never_signalled(
    tmp_path: Path,
) -> None:
    done = run_helper_as_pid_1(
        sys.executable, str(HELPERS / "reused_pid.py"), str(tmp_path / "records")
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.splitlines()[-1])
    assert result["reused"], "the namespace did not hand the dead process's pid to the stranger"
    assert result["kill"], f"--xkill stopped the stranger's daemon: {result['lines']}"
    assert result["ensure"], "ensure stopped the stranger's daemon"


@pytest.mark.parametrize("who", ["self", "parent"], ids=["this process", "its parent"])
def test_a_record_naming_this_process_or_an_ancestor_is_never_signalled(
    tmp_path: Path, who: str
) -> None:
    env = {**os.environ, tokens.TOKEN_VAR: tokens.new_token()}
    done = run_helper(sys.executable, str(HELPERS / "planted.py"), str(tmp_path), who, env=env)
    assert done.returncode == 0, done.stderr
    assert not (tmp_path / "signalled").exists(), done.stdout
    assert done.stdout.count("never signalled") == 2, done.stdout


def test_a_record_naming_pid_1_is_never_signalled(tmp_path: Path) -> None:
    """Inside a PID namespace the helper is pid 1: the record names init, whatever it is."""
    env = {**os.environ, tokens.TOKEN_VAR: tokens.new_token()}
    done = run_helper_as_pid_1(
        sys.executable, str(HELPERS / "planted.py"), str(tmp_path), "self", env=env
    )
    assert done.returncode == 0, done.stderr
    assert "names pid 1," in done.stdout
    assert not (tmp_path / "signalled").exists(), done.stdout


def test_a_record_written_by_another_user_is_ignored(
    tmp_path: Path, stranger: subprocess.Popen[bytes]
) -> None:
    if os.geteuid() != 0:
        pytest.skip("making a file of another user needs root")
    root = tmp_path / "records"
    path = plant(root, "theirs", stranger.pid)
    os.chown(path, 65534, 65534)
    lines: list[str] = []
    with pytest.warns(RecordWarning, match="belongs to uid 65534"):
        assert kill([root], lines.append) == 1
    assert lines == ["- theirs UNREADABLE RECORD (nothing signalled; see the warning above)"]
    assert stranger.poll() is None


def another_boot() -> str:
    """A boot id of the kind this path reads (a kernel boot id, or a boot time)."""
    return "boot-1" if BOOT_ID.startswith("boot-") else "another-boot"


def test_a_record_of_another_boot_without_a_since_boot_time_is_dead(
    tmp_path: Path, stranger: subprocess.Popen[bytes]
) -> None:
    root = tmp_path / "records"
    plant(root, "old", stranger.pid, start_since_boot=None, boot_id=another_boot())
    xp = XProcess(None, root)
    assert not xp.getinfo("old").isrunning()
    lines: list[str] = []
    assert kill([root], lines.append) == 0
    assert lines == [f"{stranger.pid} old NO PROCESS FOUND"]
    assert stranger.poll() is None


def test_a_daemon_that_escaped_with_double_fork_and_setsid_is_stopped(
    xp: XProcess, tmp_path: Path
) -> None:
    pidfile = tmp_path / "escaped.pid"
    pid, _ = xp.ensure("srv", starter("--escape", pidfile))
    wait_for(pidfile.exists, what="the escaped daemon")
    daemon = int(pidfile.read_text())
    assert os.getsid(daemon) != os.getsid(pid)
    assert daemon not in [p.pid for p in psutil.Process(pid).children(recursive=True)]
    assert xp.getinfo("srv").terminate() == 1
    assert not running(daemon)


def test_a_process_that_cannot_be_verified_is_reported_and_not_signalled(xp: XProcess) -> None:
    if os.geteuid() != 0:
        pytest.skip("starting a process as another user needs root")
    # Another user cannot enter the test's directories: it runs from "/", logging through us.
    args = ["/bin/sh", "-c", "echo ready; exec sleep 600"]
    pid, _ = xp.ensure("srv", starter(args=args, popen_kwargs={"user": 65534, "cwd": "/"}))
    path = xp.rootdir / "srv" / "record.json"
    record = json.loads(path.read_text())
    path.write_text(json.dumps({**record, "uid": -1}))  # as if it had changed user since
    lines: list[str] = []
    assert kill([xp.rootdir], lines.append) == 1
    assert lines[0] == f"{pid} srv NOT SIGNALLED"
    assert "cannot be verified, not signalled" in lines[1]
    assert running(pid)
    path.write_text(json.dumps(record))
    assert xp.getinfo("srv").terminate() == 1


def test_token_carriers_are_found_without_proc_environ(
    xp: XProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    pid, _ = xp.ensure("srv", starter("--children", 1))
    wait_for(lambda: len(psutil.Process(pid).children()) == 1, what="the child")
    token = json.loads((xp.rootdir / "srv" / "record.json").read_text())["token"]
    wait_for(lambda: len(tokens.carriers(token)) == 2, what="the child to carry the token")
    with_proc = tokens.carriers(token)
    monkeypatch.setattr(tokens, "HAVE_PROC_ENVIRON", False)
    assert tokens.carriers(token) == with_proc
    assert len(with_proc) == 2 and pid in with_proc
    assert xp.getinfo("srv").terminate() == 1


def test_a_record_without_a_token_stops_its_process_and_descendants_only(
    xp: XProcess, tmp_path: Path
) -> None:
    """Records of versions without tokens: nothing is looked for beyond the process's tree."""
    pidfile = tmp_path / "sibling.pid"
    sibling = " ".join(child_args("--count-file", pidfile, "--ready", "sibling"))
    script = f"({sibling} > /dev/null &); echo ready; exec sleep 600"
    pid, _ = xp.ensure("srv", starter(args=["/bin/sh", "-c", script]))
    wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), what="the sibling")
    left = psutil.Process(int(pidfile.read_text()))
    path = xp.rootdir / "srv" / "record.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "token": ""}))
    try:
        assert xp.getinfo("srv").terminate() == 1
        assert not running(pid)
        assert left.is_running(), "a process outside the tree was stopped without a token"
    finally:
        left.kill()
        left.wait(5)


@pytest.mark.parametrize(
    "fields",
    [{}, {"leads_session": False}, {"leads_session": True}],
    ids=["no session field", "says it is no session leader", "says it leads its session"],
)
def test_a_record_proving_only_pid_and_start_time_is_reported_and_left_alone(
    tmp_path: Path, stranger: subprocess.Popen[bytes], fields: dict[str, object]
) -> None:
    """A record without a token naming a process with its exact start time (a hand-written one,
    or a tool imitating the format): the process is not a session leader, so it is not ours."""
    root = tmp_path / "records"
    plant(root, "imitated", stranger.pid, boot_id=BOOT_ID, **fields)
    lines: list[str] = []
    assert kill([root], lines.append) == 1
    assert stranger.poll() is None, f"the stranger was signalled: {lines}"
    assert lines[0] == f"{stranger.pid} imitated NOT SIGNALLED", lines
    assert "no token" in lines[1] and "not signalled" in lines[1], lines


def test_a_token_says_when_it_was_made() -> None:
    token = tokens.new_token()
    if HAVE_PROC_STAT:
        born = tokens.born_ticks(token)
        assert born is not None and born >= own_start_ticks()
    else:
        assert tokens.born_ticks(token) is None
    assert tokens.born_ticks("0123abcd" * 4) is None  # an earlier version's token
    assert tokens.born_ticks("0123abcd-12x") is None


def own_start_ticks() -> int:
    """When this process started, in clock ticks since boot."""
    identity = identify(os.getpid())
    assert identity is not None and identity.since_boot is not None
    return round(identity.since_boot * os.sysconf("SC_CLK_TCK"))


@pytest.mark.skipif(not HAVE_PROC_STAT, reason="start times in ticks come from /proc")
def test_a_process_older_than_the_token_it_holds_is_no_carrier() -> None:
    """Only processes created after their token was made are looked at closely: one that holds
    the value but started before it (planted, never given it by a start) is not signalled."""
    secret = tokens.new_token().rpartition("-")[0]
    # As if made 10 s from now: after the processes below were created.
    later = (time.clock_gettime(time.CLOCK_BOOTTIME) + 10) * os.sysconf("SC_CLK_TCK")
    stamped = f"{secret}-{int(later)}"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", "import time; time.sleep(600)"],
            env={**os.environ, tokens.TOKEN_VAR: value},
        )
        for value in (stamped, secret)
    ]
    try:
        old, plain = (proc.pid for proc in procs)
        wait_for(
            lambda: tokens.verify(plain, secret) is tokens.Verdict.CARRIES,
            what="the process with the unstamped token to carry it",
        )
        assert tokens.verify(old, stamped) is tokens.Verdict.ABSENT
        assert tokens.carriers(stamped) == []
        assert termination.stop_carriers(stamped, timeout=5) == 0
        assert running(old)
        assert tokens.carriers(secret) == [plain]  # the same value, unstamped: searched everywhere
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
