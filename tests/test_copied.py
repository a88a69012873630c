"""A project copied with its cache while its server runs: the copy's records are foreign.

``cp -a projA projB`` copies projA's records, which name projA's live server with its pid, start
time and token. In projB nothing of it is reused or signalled (by a start, a teardown, the end of
the run or ``--xkill``); ``--xshow`` says FOREIGN; projB starts its own server.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.support import HEADER, child_args, running, wait_for
from xprocess import ProcessStarter, XProcess
from xprocess.commands import FOREIGN, MOVED, kill, show
from xprocess.origin import Home, foreign_origin, home_of, moved_here
from xprocess.records import ProcessRecord, RecordStore
from xprocess.termination import stop_record
from xprocess.tokens import TOKEN_VAR, new_token
from xprocess.values import ValueRecord, ValueStore

pytest_plugins = ["pytester"]

# A kept server (``server``) and one the end of the run stops (``stopped_at_end``), each on a port
# of its own recorded in its data; the test stops ``server`` in its teardown when asked to.
CONFTEST = (
    HEADER
    + """
from xprocess import free_port

def starter(at_end):
    port = free_port()
    class Starter(ProcessStarter):
        pattern = "ready"
        terminate_at_end = at_end

        @property
        def args(self):
            self.data["port"] = port
            return child("--listen", port)
    return Starter

@pytest.fixture
def servers(xprocess):
    xprocess.ensure("server", starter(False))
    xprocess.ensure("stopped_at_end", starter(True))
    yield
    if os.environ.get("STOP_IN_TEARDOWN"):
        xprocess.getinfo("server").terminate()
"""
)

TEST = """
def test_uses(servers):
    pass
"""


def _root(project: Path) -> Path:
    return project / ".pytest_cache" / "d" / ".xprocess"


def _record(project: Path, name: str) -> ProcessRecord:
    record = RecordStore(_root(project)).read(name)
    assert record is not None, f"no record of {name!r} at home in {project}"
    return record


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            return True
    except OSError:
        return False


@pytest.fixture
def copied(pytester: pytest.Pytester) -> Iterator[tuple[Path, Path]]:
    """projA after a run that left its kept server running, and projB, its copy with the
    cache (records, logs, marks) made while that server runs. Everything stops at the end."""
    proj_a = pytester.path / "projA"
    proj_a.mkdir()
    (proj_a / "conftest.py").write_text(CONFTEST)
    (proj_a / "test_one.py").write_text(TEST)
    (proj_a / "pytest.ini").write_text("[pytest]\n")
    os.chdir(proj_a)
    try:
        pytester.runpytest_subprocess("-p", "no:randomly").assert_outcomes(passed=1)
        original = _record(proj_a, "server")
        assert running(original.pid)
        proj_b = pytester.path / "projB"
        shutil.copytree(proj_a, proj_b, symlinks=True)
        os.chdir(proj_b)
        yield proj_a, proj_b
    finally:
        for project in (pytester.path / "projA", pytester.path / "projB"):
            for _name, record in RecordStore(_root(project)).records():
                if record is not None:
                    stop_record(record)


def _copied_record_still_names_original(proj_a: Path, proj_b: Path) -> ProcessRecord:
    raw = json.loads((_root(proj_b) / "server" / "record.json").read_text())
    original = _record(proj_a, "server")
    assert (raw["pid"], raw["token"]) == (original.pid, original.token)
    return original


def test_a_copy_starts_its_own_server_and_leaves_the_original_running(
    pytester: pytest.Pytester, copied: tuple[Path, Path]
) -> None:
    proj_a, proj_b = copied
    original = _copied_record_still_names_original(proj_a, proj_b)
    pytester.runpytest_subprocess("-p", "no:randomly").assert_outcomes(passed=1)
    own = _record(proj_b, "server")
    assert own.pid != original.pid and own.token != original.token
    assert own.data["port"] != original.data["port"]
    assert running(original.pid) and _answers(original.data["port"])
    assert _record(proj_a, "server").pid == original.pid  # projA's record is untouched


def test_the_copys_teardown_and_end_of_run_leave_the_original_running(
    pytester: pytest.Pytester, copied: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    proj_a, proj_b = copied
    original = _copied_record_still_names_original(proj_a, proj_b)
    at_end = _record(proj_a, "stopped_at_end")  # projA's run stopped it: a dead pid, recorded
    monkeypatch.setenv("STOP_IN_TEARDOWN", "1")
    pytester.runpytest_subprocess("-p", "no:randomly").assert_outcomes(passed=1)
    assert running(original.pid) and _answers(original.data["port"])
    own = _record(proj_b, "server")
    assert own.pid != original.pid and not running(own.pid)
    assert _record(proj_b, "stopped_at_end").token != at_end.token


def test_xkill_in_the_copy_signals_nothing_of_the_original(
    pytester: pytest.Pytester, copied: tuple[Path, Path]
) -> None:
    proj_a, proj_b = copied
    original = _copied_record_still_names_original(proj_a, proj_b)
    result = pytester.runpytest_subprocess("--xkill")
    assert result.ret == 0
    result.stdout.fnmatch_lines([f"- server {FOREIGN} (nothing signalled: copied from *projA*"])
    assert running(original.pid) and _answers(original.data["port"])


def test_xshow_in_the_copy_says_foreign_and_where_from(
    pytester: pytest.Pytester, copied: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    proj_a, _proj_b = copied
    monkeypatch.setenv("COLUMNS", "1000")
    result = pytester.runpytest_subprocess("--xshow")
    assert result.ret == 0
    origin = os.path.realpath(_root(proj_a))
    result.stdout.fnmatch_lines([f"server * {FOREIGN} * copied from {origin}: names pid *"])
    assert _record(proj_a, "server").is_alive()


def test_the_original_still_reuses_its_server_after_the_copy_ran(
    pytester: pytest.Pytester, copied: tuple[Path, Path]
) -> None:
    proj_a, _proj_b = copied
    original = _record(proj_a, "server")
    pytester.runpytest_subprocess("-p", "no:randomly").assert_outcomes(passed=1)
    os.chdir(proj_a)
    pytester.runpytest_subprocess("-p", "no:randomly").assert_outcomes(passed=1)
    assert _record(proj_a, "server").pid == original.pid


# The decision, on the fields alone.


def test_a_record_is_at_home_only_under_the_root_it_names(tmp_path: Path) -> None:
    home = home_of(tmp_path)
    log = str(tmp_path / "db" / "xprocess.log")
    assert foreign_origin(home.path, home.inode, log, home) is None
    assert foreign_origin("/elsewhere/.xprocess", home.inode, log, home) == "/elsewhere/.xprocess"
    # Copied back where the original was: the same path, another directory.
    assert foreign_origin(home.path, home.inode + 1, log, Home(home.path, home.inode)) == home.path


def test_an_old_record_is_judged_by_its_log_path(tmp_path: Path) -> None:
    home = home_of(tmp_path)
    assert foreign_origin("", 0, str(tmp_path / "db" / "xprocess.log"), home) is None
    assert foreign_origin("", 0, "/projA/.xprocess/db/xprocess.log", home) == "/projA/.xprocess"


def test_a_foreign_starting_record_has_its_token_carrier_left_alone(
    tmp_path: Path, pytester: pytest.Pytester
) -> None:
    """A record copied mid-start names no pid, only a token: its carrier is never looked for."""
    original, copy = tmp_path / "a" / ".xprocess", tmp_path / "b" / ".xprocess"
    (original / "db").mkdir(parents=True)
    token = new_token()
    record = ProcessRecord("db", 0, 0.0, [], str(original / "db"), "", 0, 0.0, token=token)
    record.logpath = str(original / "db" / "xprocess.log")
    RecordStore(original).write(record)
    carrier = psutil.Popen(
        ["sleep", "600"], env={**os.environ, TOKEN_VAR: token}, start_new_session=True
    )
    try:
        shutil.copytree(original, copy, symlinks=True)
        assert RecordStore(copy).read("db") is None
        lines: list[str] = []
        assert kill([copy], lines.append) == 0
        assert any(FOREIGN in line for line in lines)
        assert running(carrier.pid)
        assert RecordStore(original).read("db") is not None
    finally:
        carrier.kill()
        carrier.wait()


def test_a_foreign_kept_value_is_neither_used_nor_cleaned_up(tmp_path: Path) -> None:
    original, copy = tmp_path / "a" / ".xprocess", tmp_path / "b" / ".xprocess"
    store = ValueStore(original)
    path = store.kept_path("url")
    store.write(path, ValueRecord(name="url", run_id="r", payload='"a"', key="k"))
    shutil.copytree(original, copy, symlinks=True)
    copied_store = ValueStore(copy)
    assert copied_store.read(copied_store.kept_path("url")) is None
    assert copied_store.foreign(copied_store.kept_path("url")) == os.path.realpath(original)
    assert store.read(path) is not None


def _server() -> type[ProcessStarter]:
    return type("Server", (ProcessStarter,), {"pattern": "ready", "args": child_args()})


@pytest.fixture
def moved(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """A project that started a server, then was moved (``mv projA projB``): the server's pid
    and the records root at the new place."""
    xp = XProcess(None, tmp_path / "projA" / "records")
    pid, _ = xp.ensure("server", _server())
    os.rename(tmp_path / "projA", tmp_path / "projB")
    yield pid, tmp_path / "projB" / "records"
    with contextlib.suppress(psutil.Error):
        psutil.Process(pid).kill()


def test_a_moved_project_stops_what_it_left_running_at_its_old_place(
    moved: tuple[int, Path],
) -> None:
    old_pid, root = moved
    lines: list[str] = []
    show([root], lines.append)
    assert any(f"{MOVED}" in line and "server" in line for line in lines), lines
    assert running(old_pid)
    xp = XProcess(None, root)
    pid, _ = xp.ensure("server", _server())
    try:
        assert pid != old_pid
        wait_for(lambda: not running(old_pid), what="the server started before the move to stop")
    finally:
        xp.getinfo("server").terminate()


def test_xkill_in_a_moved_project_stops_the_old_server_and_forgets_it(
    moved: tuple[int, Path],
) -> None:
    old_pid, root = moved
    lines: list[str] = []
    assert kill([root], lines.append) == 0, lines
    assert f"{old_pid} server TERMINATED" in lines[-1], lines
    assert not running(old_pid)
    assert not (root / "server" / "record.json").exists()


def test_a_record_is_moved_only_when_its_old_path_left_the_directory(tmp_path: Path) -> None:
    here = tmp_path / "here"
    here.mkdir()
    home = home_of(here)
    assert moved_here(str(tmp_path / "gone"), home.inode, home.device, home)
    assert not moved_here(str(here), home.inode, home.device, home)  # at home, not moved
    (tmp_path / "new").mkdir()  # a new directory took the old path after the move
    assert moved_here(str(tmp_path / "new"), home.inode, home.device, home)
    assert not moved_here(str(tmp_path / "gone"), home.inode + 1, home.device, home)  # a copy
    assert not moved_here(str(tmp_path / "gone"), home.inode, 0, home)  # an older record
