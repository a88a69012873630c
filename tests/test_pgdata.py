"""Where PostgreSQL clusters of ``xprocess.servers`` live and when they go.

The rules (``xprocess.servers._pgdata``) are driven on real directories with real processes; the
removal when a server stops and the pristine cluster's cache, through whole pytest runs with a
real PostgreSQL.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.test_servers import need_postgresql
from xprocess.manager import XProcessInfo
from xprocess.servers import _pgdata

CONFTEST = """
from xprocess.servers import postgresql as pg

postgresql_proc = pg.postgresql_proc(keep={keep})
postgresql = pg.postgresql("postgresql_proc")
"""

TESTS = """
def test_db(postgresql):
    assert postgresql.execute("SELECT 1").fetchone() == (1,)
"""


@pytest.fixture
def scratch_base(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Scratch directories go to a directory of the test's own (not the machine's /dev/shm)."""
    base = tmp_path / "base"
    base.mkdir()
    monkeypatch.setattr(_pgdata, "TMPFS", base)
    monkeypatch.setattr(_pgdata, "scratch_base", lambda: base)
    monkeypatch.setattr(tempfile, "tempdir", str(base))
    return base


def records_root(project: Path) -> Path:
    root = project / "records"
    (root / "postgresql").mkdir(parents=True)
    return root


def scratch_of(base: Path, root: Path, *, pid: int, create_time: float, uid: int = -1) -> Path:
    """A scratch directory as a start makes it, with a cluster directory in it."""
    scratch = base / f"{_pgdata.SCRATCH_PREFIX}{len(list(base.iterdir()))}"
    (scratch / "data").mkdir(parents=True)
    owner = {
        "records_root": str(root.resolve()),
        "uid": os.geteuid() if uid == -1 else uid,
        "pid": pid,
        "create_time": create_time,
    }
    (scratch / _pgdata.OWNER_FILE).write_text(json.dumps(owner), encoding="utf-8")
    return scratch


def old_clusters(
    tmp_path: Path, scratch_base: Path, dead: tuple[int, float]
) -> tuple[Path, Path, Path]:
    """A project's records root and two old clusters a start that has ended left: one in a
    scratch directory (returned: the directory holding ``data``), one under the records root."""
    root = records_root(tmp_path / "a")
    scratch = scratch_of(scratch_base, root, pid=dead[0], create_time=dead[1])
    under_root = root / "postgresql" / "data"
    under_root.mkdir()
    return root, scratch, under_root


def remove_old_datadirs(root: Path, scratch: Path, under_root: Path) -> None:
    """What a start of ``root``'s server does with each of the two old clusters."""
    for datadir in (scratch / "data", under_root):
        _pgdata.remove_old_datadir(str(datadir), root / "postgresql")


@pytest.fixture
def dead() -> tuple[int, float]:
    """The pid and start time of a process that has exited."""
    proc = psutil.Popen([sys.executable, "-c", "pass"])
    create_time = proc.create_time()
    proc.wait()
    return proc.pid, create_time


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    yield proc
    proc.kill()
    proc.wait()


def test_an_old_cluster_another_project_made_is_left_alone(
    tmp_path: Path, scratch_base: Path, dead: tuple[int, float]
) -> None:
    # What "cp -a projA projB" gives projB: a record naming projA's cluster.
    their_root = records_root(tmp_path / "a")
    theirs = scratch_of(scratch_base, their_root, pid=dead[0], create_time=dead[1])
    ours = records_root(tmp_path / "b")
    _pgdata.remove_old_datadir(str(theirs / "data"), ours / "postgresql")
    assert (theirs / "data").is_dir()


def test_an_old_cluster_this_project_made_is_removed(
    tmp_path: Path, scratch_base: Path, dead: tuple[int, float]
) -> None:
    root, scratch, under_root = old_clusters(tmp_path, scratch_base, dead)
    remove_old_datadirs(root, scratch, under_root)
    assert not scratch.exists()
    assert not under_root.exists()


def test_an_old_cluster_whose_postmaster_may_run_is_left_alone(
    tmp_path: Path,
    scratch_base: Path,
    dead: tuple[int, float],
    sleeper: subprocess.Popen[bytes],
) -> None:
    root, scratch, under_root = old_clusters(tmp_path, scratch_base, dead)
    (scratch / "data" / "postmaster.pid").write_text(f"{sleeper.pid}\n/data\n", encoding="utf-8")
    (under_root / "postmaster.pid").write_text(f"{sleeper.pid}\n", encoding="utf-8")
    remove_old_datadirs(root, scratch, under_root)
    assert (scratch / "data").is_dir()
    assert under_root.is_dir()


def test_a_start_sweeps_only_what_dead_servers_of_this_user_left(
    tmp_path: Path,
    scratch_base: Path,
    dead: tuple[int, float],
    sleeper: subprocess.Popen[bytes],
) -> None:
    root = records_root(tmp_path / "a")
    left = scratch_of(scratch_base, root, pid=dead[0], create_time=dead[1])
    live = psutil.Process(sleeper.pid)
    being_made = scratch_of(scratch_base, root, pid=live.pid, create_time=live.create_time())
    running = scratch_of(scratch_base, root, pid=dead[0], create_time=dead[1])
    (running / "data" / "postmaster.pid").write_text(f"{sleeper.pid}\n", encoding="utf-8")
    other_user = scratch_of(
        scratch_base, root, pid=dead[0], create_time=dead[1], uid=os.geteuid() + 1
    )
    unmarked = scratch_base / f"{_pgdata.SCRATCH_PREFIX}unmarked"
    unmarked.mkdir()
    assert _pgdata.sweep() == [left]
    assert not left.exists()
    assert all(p.is_dir() for p in (being_made, running, other_user, unmarked))


@pytest.fixture
def pg_project(pytester: pytest.Pytester) -> Iterator[pytest.Pytester]:
    need_postgresql()
    pytester.makepyfile(test_db=TESTS)
    pytester.makeini("[pytest]\n")
    yield pytester
    info = XProcessInfo(pytester.path / ".pytest_cache" / "d" / ".xprocess", "postgresql")
    info.terminate()


def cluster_of(project: pytest.Pytester) -> Path:
    records = project.path / ".pytest_cache" / "d" / ".xprocess"
    return Path(XProcessInfo(records, "postgresql").data["datadir"])


def test_the_cluster_goes_when_its_server_stops_at_the_end_of_the_run(
    pg_project: pytest.Pytester,
) -> None:
    pg_project.makeconftest(CONFTEST.format(keep=False))
    pg_project.runpytest_subprocess(timeout=180).assert_outcomes(passed=1)
    datadir = cluster_of(pg_project)
    assert datadir.parent.name.startswith(_pgdata.SCRATCH_PREFIX)
    assert not datadir.parent.exists(), "the cluster outlived its server"


def test_a_kept_cluster_goes_with_xkill_and_the_next_start_copies_the_cached_one(
    pg_project: pytest.Pytester,
) -> None:
    pg_project.makeconftest(CONFTEST.format(keep=True))
    pg_project.runpytest_subprocess(timeout=180).assert_outcomes(passed=1)
    first = cluster_of(pg_project)
    assert (first / "PG_VERSION").is_file(), "a kept server's cluster is there while it runs"
    cache = pg_project.path / ".pytest_cache" / "d" / ".xprocess" / ".cache"
    cached = list(cache.glob("postgresql-*"))
    assert len(cached) == 1 and (cached[0] / "PG_VERSION").is_file()
    assert pg_project.runpytest_subprocess("--xkill", timeout=180).ret == 0
    assert not first.parent.exists(), "--xkill left the cluster"
    (cached[0] / "copied-from-the-cache").write_text("", encoding="utf-8")
    pg_project.runpytest_subprocess(timeout=180).assert_outcomes(passed=1)
    second = cluster_of(pg_project)
    assert second != first
    assert (second / "copied-from-the-cache").exists(), "initdb ran again instead of the cache"
    assert pg_project.runpytest_subprocess("--xkill", timeout=180).ret == 0
    assert not second.parent.exists()


def test_a_copy_of_the_project_starts_its_own_cluster_and_leaves_the_original_alone(
    pg_project: pytest.Pytester,
) -> None:
    """``cp -a`` of a project whose kept server runs: the copy's record names the original's
    cluster; the copy's start must neither use nor remove it, nor its --xkill stop it."""
    pg_project.makeconftest(CONFTEST.format(keep=True))
    pg_project.runpytest_subprocess(timeout=180).assert_outcomes(passed=1)
    original = cluster_of(pg_project)
    copy = pg_project.path.with_name(pg_project.path.name + "-copy")
    # cp -a, as a user would: as root, the cluster files keep their owner (the server's user).
    subprocess.run(["cp", "-a", str(pg_project.path), str(copy)], check=True)
    copy_records = copy / ".pytest_cache" / "d" / ".xprocess"
    os.chdir(copy)
    try:
        pg_project.runpytest_subprocess(timeout=180).assert_outcomes(passed=1)
        own = Path(XProcessInfo(copy_records, "postgresql").data["datadir"])
        assert own != original
        assert (original / "PG_VERSION").is_file() and _pgdata.postmaster_alive(original)
        assert pg_project.runpytest_subprocess("--xkill", timeout=180).ret == 0
        assert not own.parent.exists(), "--xkill in the copy left the copy's cluster"
        assert (original / "PG_VERSION").is_file() and _pgdata.postmaster_alive(original)
        home = XProcessInfo(pg_project.path / ".pytest_cache" / "d" / ".xprocess", "postgresql")
        assert home.isrunning(), "the original's server was stopped from the copy"
    finally:
        XProcessInfo(copy_records, "postgresql").terminate()
        os.chdir(pg_project.path)
