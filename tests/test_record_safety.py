"""Records and logs: nothing is written outside the records root, a bad record never stops a
command, and a start that fails after the spawn leaves nothing running."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from tests.support import (
    HEADER,
    HELPERS,
    child_args,
    count_lines,
    namespaces_or_skip,
    running,
    srv_under_read_only_root,
    wait_for,
    working_in,
)
from xprocess import InvalidStarterError, ProcessStarter, RecordWarning, UnsafePathError, XProcess
from xprocess.commands import kill, show
from xprocess.starting import HOLD_AFTER_SPAWN_VAR


@pytest.fixture
def xp(tmp_path: Path) -> XProcess:
    return XProcess(None, tmp_path / "records")


def starter(*flags: object) -> type[ProcessStarter]:
    return type("Starter", (ProcessStarter,), {"pattern": "ready", "args": child_args(*flags)})


def test_a_log_that_is_a_symlink_is_refused_and_its_target_kept(
    xp: XProcess, tmp_path: Path
) -> None:
    precious = tmp_path / "precious.txt"
    precious.write_text("keep me\n")
    controldir = xp.getinfo("srv").controldir
    (controldir / "xprocess.log").symlink_to(precious)
    with pytest.raises(UnsafePathError, match=r"the log of 'srv', .*xprocess.log, is a symlink"):
        xp.ensure("srv", starter(), persist_logs=False)
    assert precious.read_text() == "keep me\n"
    assert not xp.getinfo("srv").isrunning()


def test_a_control_dir_that_is_a_symlink_is_refused(xp: XProcess, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    xp.rootdir.mkdir()
    (xp.rootdir / "srv").symlink_to(elsewhere)
    with pytest.raises(UnsafePathError, match=r"the control dir of 'srv', .*srv, is a symlink"):
        xp.ensure("srv", starter())
    assert list(elsewhere.iterdir()) == []


BAD_RECORDS = {
    "deeply nested": "[" * 100_000 + "]" * 100_000,
    "users of the wrong type": {"users": [1]},
    "a numeric state": {"state": 3},
}


def write_bad_record(root: Path, name: str, bad: object) -> None:
    (root / name).mkdir(parents=True, exist_ok=True)
    if isinstance(bad, str):
        text = bad
    else:
        assert isinstance(bad, dict)
        base = {
            "name": name,
            "pid": 1,
            "create_time": 0.0,
            "argv": [],
            "cwd": "",
            "logpath": "",
            "log_offset": 0,
            "started_at": 0.0,
        }
        text = json.dumps({**base, **bad})
    (root / name / "record.json").write_text(text)


@pytest.mark.parametrize("bad", BAD_RECORDS.values(), ids=BAD_RECORDS.keys())
def test_show_and_kill_go_on_past_a_malformed_record(xp: XProcess, bad: object) -> None:
    pid, _ = xp.ensure("zz-good", starter())
    write_bad_record(xp.rootdir, "aa-bad", bad)
    lines: list[str] = []
    with pytest.warns(RecordWarning, match="'aa-bad'"):
        show([xp.rootdir], lines.append)
    assert lines[1].split()[:3] == ["aa-bad", "-", "DEAD"]
    assert lines[2].split()[:3] == ["zz-good", str(pid), "LIVE"]
    lines.clear()
    with pytest.warns(RecordWarning, match="'aa-bad'"):
        assert kill([xp.rootdir], lines.append) == 1
    assert lines == [
        "- aa-bad UNREADABLE RECORD (nothing signalled; see the warning above)",
        f"{pid} zz-good TERMINATED",
    ]
    assert not running(pid)


@pytest.mark.parametrize("bad", BAD_RECORDS.values(), ids=BAD_RECORDS.keys())
def test_ensure_starts_afresh_over_a_malformed_record(xp: XProcess, bad: object) -> None:
    write_bad_record(xp.rootdir, "srv", bad)
    with pytest.warns(RecordWarning, match="'srv'"):
        pid, _ = xp.ensure("srv", starter())
    assert xp.getinfo("srv").pid == pid
    assert xp.getinfo("srv").terminate() == 1


def test_the_end_of_a_run_goes_on_past_a_malformed_record(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        HEADER
        + """
class Server(ProcessStarter):
    pattern = "ready"
    args = child("--count-file", "started")
    terminate_at_end = True
"""
    )
    pytester.makepyfile(
        """
        import json
        from conftest import Server

        def test_uses(xprocess):
            pid, _ = xprocess.ensure("zz-server", Server)
            bad = xprocess.rootdir / "aa-bad"
            bad.mkdir()
            (bad / "record.json").write_text(json.dumps({"users": [1], "name": "aa-bad"}))
            open("pid", "w").write(str(pid))
        """
    )
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(passed=1)
    assert not running(int((pytester.path / "pid").read_text()))
    shutil.rmtree(pytester.path / ".pytest_cache" / "d" / ".xprocess" / "aa-bad")


def test_a_failure_writing_the_record_after_spawn_stops_the_spawned_process(
    tmp_path: Path,
) -> None:
    namespaces_or_skip("--mount")
    disk = tmp_path / "disk"
    disk.mkdir()
    script = 'mount -t tmpfs -o size=64k tmpfs "$1" && exec "$2" "$3" "$1" "$4"'
    done = subprocess.run(
        [
            "unshare",
            "--mount",
            "sh",
            "-c",
            script,
            "sh",
            str(disk),
            sys.executable,
            str(HELPERS / "full_disk.py"),
            str(tmp_path / "marker"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.splitlines()[-1])
    assert "No space left on device" in result["error"]
    assert result["left"] == []


def test_a_running_process_is_reused_from_a_read_only_records_root(
    pytester: pytest.Pytester,
) -> None:
    with srv_under_read_only_root(pytester.path) as srv:
        pytester.makepyfile(
            f"""
            from conftest import Server

            def test_reuses(xprocess):
                pid, _ = xprocess.ensure("srv", Server)
                assert pid == {srv.pid}
            """
        )
        done = srv.pytest()
        assert done.returncode == 0, done.stdout + done.stderr
        assert "1 passed" in done.stdout
        assert (pytester.path / "started").read_text().split() == [str(srv.pid)]


def test_a_name_too_long_for_the_file_system_is_refused_before_anything_is_made(
    xp: XProcess,
) -> None:
    name = "n" * 300
    with pytest.raises(InvalidStarterError, match="300 bytes long"):
        xp.ensure(name, starter())
    assert not xp.rootdir.exists()
    with pytest.raises(InvalidStarterError, match="300 bytes long"):
        xp.getinfo(name)


def test_no_record_is_written_through_a_symlinked_record_file(xp: XProcess, tmp_path: Path) -> None:
    precious = tmp_path / "precious.json"
    precious.write_text("{}")
    controldir = xp.getinfo("srv").controldir
    (controldir / "record.json").symlink_to(precious)
    with pytest.warns(RecordWarning, match="it is a symlink"):
        pid, _ = xp.ensure("srv", starter())
    assert precious.read_text() == "{}"
    assert not os.path.islink(controldir / "record.json")
    assert xp.getinfo("srv").pid == pid
    assert xp.getinfo("srv").terminate() == 1


def test_a_malformed_shared_value_record_is_listed_and_cleared(xp: XProcess) -> None:
    bad = xp.rootdir / ".values" / "db" / "run-x.json"
    bad.parent.mkdir(parents=True)
    bad.write_text(json.dumps({"name": "db", "run_id": "x", "cleanup": [1]}))
    lines: list[str] = []
    with pytest.warns(RecordWarning, match="wrong value"):
        show([xp.rootdir], lines.append)
    assert lines == [f"- db VALUE unreadable record {bad}"]
    lines.clear()
    with pytest.warns(RecordWarning, match="wrong value"):
        assert kill([xp.rootdir], lines.append) == 0
    assert lines == ["- db VALUE CLEARED"]
    assert not bad.exists()


HALF_STARTED = """
ROOT = Path(__file__).parent

class Server(ProcessStarter):
    pattern = "ready"
    args = child("--count-file", ROOT / "starts")

@pytest.fixture
def server(xprocess):
    return xprocess.ensure("server", Server)[0]
"""


def _kill_between_spawn_and_record(pytester: pytest.Pytester) -> int:
    """Run the project until its start has spawned the server, SIGKILL pytest there; return the
    pid of the half-started server, which no record names yet."""
    hold = pytester.path / "hold"
    env = {**os.environ, HOLD_AFTER_SPAWN_VAR: str(hold)}
    starter = subprocess.Popen(
        [sys.executable, "-m", "pytest"],
        cwd=pytester.path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(
            lambda: (hold.exists() and hold.read_text().strip()) or starter.poll() is not None,
            30,
            "the spawn",
        )
        assert starter.poll() is None, "the run ended before it spawned the server"
        server = int(hold.read_text())
    finally:
        starter.kill()
        starter.wait(10)
    hold.unlink()
    wait_for(lambda: count_lines(pytester.path / "starts") == 1, 30, "the server to run")
    assert running(server)
    return server


@pytest.mark.parametrize("successor", ["a start of the same name", "--xkill"])
def test_a_start_killed_between_spawn_and_record_leaves_nothing_running(
    pytester: pytest.Pytester, successor: str
) -> None:
    pytester.makeconftest(HEADER + HALF_STARTED)
    pytester.makepyfile("def test_uses(server):\n    pass\n")
    server = _kill_between_spawn_and_record(pytester)
    try:
        if successor == "--xkill":
            result = pytester.runpytest_subprocess("--xkill")
            assert result.ret == 0, result.stdout.str()
            assert not running(server), "--xkill did not find the half-started server"
        else:
            pytester.runpytest_subprocess().assert_outcomes(passed=1)
            assert not running(server), "the successor did not stop the half-started server"
            assert count_lines(pytester.path / "starts") == 2
            assert pytester.runpytest_subprocess("--xkill").ret == 0
    finally:
        with contextlib.suppress(psutil.Error):
            psutil.Process(server).kill()
    assert not working_in(pytester.path)


@pytest.mark.parametrize("planted", ["lock file", "locks dir"])
def test_a_symlink_planted_as_a_lock_is_refused_and_its_target_kept(
    xp: XProcess, tmp_path: Path, planted: str
) -> None:
    """Whatever version of any library is installed: the lock file is opened by xprocess, never
    through a link, never truncated."""
    precious = tmp_path / "precious.txt"
    precious.write_text("keep me\n")
    locks = xp.rootdir / ".locks"
    if planted == "lock file":
        locks.mkdir(parents=True)
        (locks / "srv.lock").symlink_to(precious)
        match = r"the lock file of 'srv', .*srv.lock, is a symlink"
    else:
        xp.rootdir.mkdir(parents=True)
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        locks.symlink_to(elsewhere)
        match = r"the lock dir .*\.locks is a symlink"
    with pytest.raises(UnsafePathError, match=match):
        xp.ensure("srv", starter())
    assert precious.read_text() == "keep me\n"
    assert not (tmp_path / "elsewhere").exists() or not list((tmp_path / "elsewhere").iterdir())
    assert not xp.getinfo("srv").isrunning()
