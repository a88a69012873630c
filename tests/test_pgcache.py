"""The pristine PostgreSQL cluster's cache (``xprocess.servers._pgcache``): begun before the
fixture asks, filled off the path to the first test, never taken for complete when a kill cut it
short, and what such a kill leaves swept by the next start.

The sweep's rules and the hand-over of a cluster made ahead are driven on real directories with a
stand-in for initdb; the fill, through whole pytest runs with a real PostgreSQL, held in the
middle with ``XPROCESS_TEST_HOLD_CACHE_FILL``.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import psutil
import pytest

from tests.helpers.projects import wait_for
from tests.test_servers import need_postgresql
from xprocess.locking import NameLock
from xprocess.manager import XProcessInfo
from xprocess.servers import _pgahead, _pgcache, _pgdata, warm_up
from xprocess.servers.postgresql import find_postgres

CONFTEST = """
from xprocess.servers import postgresql as pg

postgresql_proc = pg.postgresql_proc()
postgresql = pg.postgresql("postgresql_proc")
"""

TESTS = """
import os
from pathlib import Path

import pytest

@pytest.mark.parametrize("i", range(4))
def test_db(postgresql, i):
    if "FIRST_TEST_RAN" in os.environ:
        Path(os.environ["FIRST_TEST_RAN"]).touch()
    assert postgresql.execute("SELECT 1").fetchone() == (1,)
"""

# Generous: initdb, a server start and a copy of 40 MB on a loaded machine.
DEADLINE = 120


def owned(directory: Path, root: Path, pid: int, *, uid: int | None = None) -> Path:
    """``directory`` made, with an owner.json naming ``pid`` (and its start time, if it runs)."""
    directory.mkdir(parents=True)
    try:
        create_time = psutil.Process(pid).create_time()
    except psutil.Error:
        create_time = 0.0
    owner = {
        "records_root": str(root),
        "uid": os.geteuid() if uid is None else uid,
        "pid": pid,
        "create_time": create_time,
    }
    (directory / _pgdata.OWNER_FILE).write_text(json.dumps(owner), encoding="utf-8")
    return directory


def test_the_sweep_removes_only_unfinished_copies_whose_makers_are_gone(tmp_path: Path) -> None:
    cache = tmp_path / "records" / ".cache"
    dead = psutil.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    by_dead = owned(cache / ".new-dead", cache.parent, dead.pid)
    (by_dead / "data").mkdir()
    by_me = owned(cache / ".new-live", cache.parent, os.getpid())
    other_user = owned(cache / ".new-other", cache.parent, dead.pid, uid=os.geteuid() + 1)
    unmarked_old = cache / ".new-unmarked-old"
    unmarked_old.mkdir()
    hour_ago = time.time() - 3600
    os.utime(unmarked_old, (hour_ago, hour_ago))
    unmarked_new = cache / ".new-unmarked-new"
    unmarked_new.mkdir()
    legacy = cache / ".new-legacy"
    (legacy / "data").mkdir(parents=True)
    os.utime(legacy, (hour_ago, hour_ago))
    complete = cache / "postgresql-0123456789abcdef"
    complete.mkdir()
    assert sorted(_pgcache.sweep_cache(cache)) == sorted([by_dead, unmarked_old])
    assert not by_dead.exists() and not unmarked_old.exists()
    assert all(p.is_dir() for p in (by_me, other_user, unmarked_new, legacy, complete))


def leftovers(records: Path) -> list[Path]:
    """What of this project's is left on the disk and the tmpfs, but its cache: unfinished
    copies in the cache, files naming a cluster made ahead, scratch directories (clusters) whose
    owner.json names its records."""
    found = list((records / ".cache").glob(f"{_pgcache.PENDING_PREFIX}*"))
    found += (records / ".cache").glob(f"{_pgahead.AHEAD_PREFIX}*.json")
    for base in {_pgdata.scratch_base(), Path(tempfile.gettempdir()), _pgdata.TMPFS}:
        for scratch in base.glob(f"{_pgdata.SCRATCH_PREFIX}*"):
            owner = _pgdata.owner_of(scratch)
            if owner and owner.get("records_root") == str(records.resolve()):
                found.append(scratch)
    return found


def cached(records: Path) -> list[Path]:
    """The complete pristine clusters in the cache."""
    return list((records / ".cache").glob("postgresql-*"))


@pytest.fixture
def pg_project(pytester: pytest.Pytester) -> Iterator[pytest.Pytester]:
    need_postgresql()
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_db=TESTS)
    pytester.makeini("[pytest]\n")
    yield pytester
    info = XProcessInfo(records_of(pytester), "postgresql")
    info.terminate()


def records_of(project: pytest.Pytester) -> Path:
    return project.path / ".pytest_cache" / "d" / ".xprocess"


def start_held(project: pytest.Pytester, *args: str) -> tuple[subprocess.Popen[bytes], Path, int]:
    """Run the project until its cache fill holds; return the run, the first test's mark, and
    the pid of the process filling the cache."""
    hold, ran = project.path / "hold", project.path / "ran"
    env = {**os.environ, _pgcache.HOLD_CACHE_FILL_VAR: str(hold), "FIRST_TEST_RAN": str(ran)}
    run = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-p", "no:randomly", *args],
        cwd=project.path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(
            lambda: (hold.exists() and hold.read_text().strip()) or run.poll() is not None,
            DEADLINE,
            "the cache fill to hold",
        )
    except BaseException:
        run.kill()
        run.wait()
        raise
    assert run.poll() is None, "the run ended before it filled the cache"
    return run, ran, int(hold.read_text())


@pytest.mark.parametrize("workers", [(), ("-n", "2")], ids=["alone", "xdist"])
def test_the_first_test_runs_before_the_new_cluster_is_in_the_cache(
    pg_project: pytest.Pytester, workers: tuple[str, ...]
) -> None:
    records = records_of(pg_project)
    run, ran, filler = start_held(pg_project, *workers)
    # The run's main process began the cluster ahead, when its session started: it fills.
    assert filler == run.pid
    try:
        wait_for(lambda: ran.exists() or run.poll() is not None, DEADLINE, "the first test")
        assert ran.exists(), "the run ended without running a test"
        assert cached(records) == [], "the cache was filled before the first test"
    finally:
        (pg_project.path / "hold").unlink()
        assert run.wait(DEADLINE) == 0
    [cluster] = cached(records)
    assert (cluster / "PG_VERSION").is_file() and (cluster / "global" / "pg_control").is_file()
    assert leftovers(records) == [], "the run left its clusters or an unfinished copy"


@pytest.mark.parametrize(
    "killed", ["pytest", "pytest under xdist", "the xdist worker filling the cache"]
)
def test_a_kill_in_the_middle_of_the_cache_fill_leaves_nothing_after_the_next_start(
    pg_project: pytest.Pytester, killed: str
) -> None:
    records = records_of(pg_project)
    if killed == "the xdist worker filling the cache":
        # A server fixture of a test module is not seen when the session starts: the worker
        # starting the server makes the cluster, and fills the cache.
        pg_project.makeconftest("")
        pg_project.makepyfile(test_db=CONFTEST + TESTS)
    args = ("-n", "2") if "xdist" in killed else ()
    run, _, filler = start_held(pg_project, *args)
    try:
        assert (filler == run.pid) == killed.startswith("pytest")
        os.kill(filler, signal.SIGKILL)
        run.wait(DEADLINE)  # with xdist, the run goes on and ends without that worker
    finally:
        run.kill()
        run.wait()
        (pg_project.path / "hold").unlink()
    unfinished = list((records / ".cache").glob(f"{_pgcache.PENDING_PREFIX}*"))
    assert [p.name for p in unfinished if (p / "data").is_dir()], "the fill was not cut short"
    assert cached(records) == [], "an unfinished copy was taken for a complete one"
    assert leftovers(records), "nothing for the next start to sweep"

    pg_project.runpytest_subprocess(timeout=DEADLINE).assert_outcomes(passed=4)
    [cluster] = cached(records)
    assert (cluster / "PG_VERSION").is_file()
    # The server stops at the end of the run; its scratch directory goes as its sh exits.
    wait_for(lambda: leftovers(records) == [], 30, "the leftovers to go")


KEY = "0123456789abcdef"


def stand_in_initdb(target: Path) -> None:
    target.mkdir()
    (target / "PG_VERSION").write_text("stand-in\n", encoding="utf-8")


@pytest.fixture
def cache_and_control(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """A records root's cache dir, and a server's control dir in it; its scratch dirs removed
    at the end."""
    records = tmp_path / "records"
    control = records / "postgresql"
    control.mkdir(parents=True)
    yield records / ".cache", control
    _pgcache.finish_fills()
    for left in leftovers(records):
        shutil.rmtree(left, ignore_errors=True) if left.is_dir() else left.unlink()


def test_a_start_waits_for_the_cluster_begun_ahead_and_runs_no_initdb_of_its_own(
    cache_and_control: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    cache, control = cache_and_control
    made: list[str] = []
    waiting = threading.Event()

    def ahead(target: Path) -> None:
        made.append("ahead")
        assert waiting.wait(DEADLINE), "the start did not wait for the cluster begun ahead"
        stand_in_initdb(target)

    def own(target: Path) -> None:
        made.append("own")
        stand_in_initdb(target)

    class Lock(NameLock):
        def acquire(self) -> None:
            if not self.exclusive:  # the start waits for initdb: let initdb end only now
                waiting.set()
            super().acquire()

    monkeypatch.setattr(_pgahead, "NameLock", Lock)
    scratch = functools.partial(_pgdata.make_scratch, control, None)
    assert _pgcache.make_ahead(cache, KEY, ahead, scratch)
    assert not _pgcache.make_ahead(cache, KEY, own, scratch), "a second maker began"
    target = scratch()
    used_cache = _pgcache.cached_cluster(cache, KEY, target / "data", own, scratch)
    assert (made, used_cache) == (["ahead"], True)
    assert (target / "data" / "PG_VERSION").read_text(encoding="utf-8") == "stand-in\n"
    _pgcache.finish_fills()
    assert (cache / f"postgresql-{KEY}" / "PG_VERSION").is_file(), "the maker did not fill"
    assert leftovers(cache.parent) == [target], "the maker left its file or its scratch dir"
    assert not _pgcache.make_ahead(cache, KEY, own, scratch), "began what the cache has"


LIES = [
    "a directory elsewhere",
    "a dead maker",
    "another user",
    "a directory another process marked",
    "a cluster not marked ready",
    "a FIFO",
]


@pytest.mark.parametrize("lie", LIES)
def test_a_start_believes_no_ahead_file_that_lies(
    cache_and_control: tuple[Path, Path], lie: str
) -> None:
    cache, control = cache_and_control
    pid, uid = os.getpid(), os.geteuid()
    if lie == "a dead maker":
        dead = psutil.Popen([sys.executable, "-c", "pass"])
        dead.wait()
        pid = dead.pid
    elif lie == "another user":
        uid += 1
    name = f"{_pgdata.SCRATCH_PREFIX}planted-{os.getpid()}-{time.monotonic_ns()}"
    base = cache.parent.parent if lie == "a directory elsewhere" else _pgdata.scratch_base()
    # Named as a cluster made ahead would be, ready, and marked with the claimed maker.
    planted = owned(base / name, cache.parent, pid, uid=uid)
    (planted / "data").mkdir()
    (planted / "data" / "PLANTED").touch()
    if lie != "a cluster not marked ready":
        (planted / _pgahead.READY_FILE).touch()
    claim = {**(_pgdata.owner_of(planted) or {}), "scratch": str(planted)}
    if lie == "a directory another process marked":
        claim["pid"] = os.getppid()
        claim["create_time"] = psutil.Process(os.getppid()).create_time()
    cache.mkdir()
    if lie == "a FIFO":  # read, it would block every start that sweeps the cache
        os.mkfifo(cache / f"{_pgahead.AHEAD_PREFIX}{KEY}.json")
        claim = {}
    if claim:
        ahead_file = cache / f"{_pgahead.AHEAD_PREFIX}{KEY}.json"
        ahead_file.write_text(json.dumps(claim), encoding="utf-8")
    made: list[Path] = []

    def own(target: Path) -> None:
        made.append(target)
        stand_in_initdb(target)

    target = _pgdata.make_scratch(control, None) / "data"
    scratch = functools.partial(_pgdata.make_scratch, control, None)
    _pgcache.cached_cluster(cache, KEY, target, own, scratch)
    assert len(made) == 1, "the start took the planted cluster instead of making its own"
    assert not (target / "PLANTED").exists()
    shutil.rmtree(planted)


def test_the_maker_removes_its_cluster_only_once_no_start_copies_it(
    cache_and_control: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    cache, control = cache_and_control
    ending = threading.Event()

    class Lock(NameLock):
        def acquire(self) -> None:
            if self.exclusive:  # the maker, at its end, waits for the starts still copying
                ending.set()
            super().acquire()

    monkeypatch.setattr(_pgahead, "NameLock", Lock)
    scratch = functools.partial(_pgdata.make_scratch, control, None)
    assert _pgcache.make_ahead(cache, KEY, stand_in_initdb, scratch)
    claim = _pgdata.read_json(cache / f"{_pgahead.AHEAD_PREFIX}{KEY}.json")
    assert claim is not None
    pristine = Path(claim["scratch"])
    # As a start copying it does: the use lock of the cluster, shared.
    copying = NameLock(pristine / _pgahead.USE_LOCK, "test", DEADLINE, exclusive=False)
    copying.acquire()
    try:
        assert ending.wait(DEADLINE), "the maker did not come to its end"
        assert (pristine / "data" / "PG_VERSION").is_file(), "removed while a start copies it"
    finally:
        copying.release()
    _pgcache.finish_fills()
    assert not pristine.exists()
    assert (cache / f"postgresql-{KEY}" / "PG_VERSION").is_file()


def test_what_a_conftest_holds_cannot_stop_the_session_at_its_start() -> None:
    class LazyProxy:
        def __getattr__(self, name: str) -> object:
            raise RuntimeError(f"not set up yet: {name}")

    def failing(config: object) -> None:
        raise OSError("no room")

    begun: list[object] = []

    def fixture() -> None:
        pass

    conftest = ModuleType("conftest")
    conftest.proxy = LazyProxy()  # type: ignore[attr-defined]
    conftest.first = warm_up.ahead(lambda: None, failing)  # type: ignore[attr-defined]
    conftest.second = warm_up.ahead(fixture, begun.append)  # type: ignore[attr-defined]
    warm_up.begin_ahead([conftest, object()], "the config")
    assert begun == ["the config"]


WAITS_FOR_THE_CACHE = """

import glob
import time

def pytest_collection_finish(session):
    # Only a cluster begun before the tests were collected can reach the cache meanwhile.
    deadline = time.monotonic() + {deadline}
    while not glob.glob({pattern!r}):
        if time.monotonic() > deadline:
            raise RuntimeError("no cluster was begun ahead")
        time.sleep(0.01)
"""


def test_initdb_begins_when_the_session_starts_before_the_fixture_asks(
    pg_project: pytest.Pytester,
) -> None:
    records = records_of(pg_project)
    pattern = str(records / ".cache" / "postgresql-*")
    pg_project.makeconftest(CONFTEST + WAITS_FOR_THE_CACHE.format(deadline=60, pattern=pattern))
    pg_project.runpytest_subprocess(timeout=DEADLINE).assert_outcomes(passed=4)
    [cluster] = cached(records)
    assert (cluster / "PG_VERSION").is_file()
    # Made early, the cache directory is still kept out of version control.
    assert "*" in (pg_project.path / ".pytest_cache" / ".gitignore").read_text(encoding="utf-8")
    wait_for(lambda: leftovers(records) == [], 30, "the leftovers to go")


COUNTING_INITDB = """#!/bin/sh
echo "$$" >> '{count}'
exec '{initdb}' "$@"
"""


@pytest.fixture
def counted_initdb() -> Iterator[tuple[Path, Path]]:
    """A bin dir whose ``postgres`` is the installed one and whose ``initdb`` counts its runs
    (in a directory the server's user, ``postgres`` when the tests run as root, can reach)."""
    postgres = find_postgres()
    bindir = Path(tempfile.mkdtemp(prefix="xprocess-test-bin-", dir=_pgdata.scratch_base()))
    try:
        bindir.chmod(0o755)
        (bindir / "postgres").symlink_to(postgres)
        count = bindir / "initdb-runs"
        count.touch(mode=0o666)
        count.chmod(0o666)
        initdb = bindir / "initdb"
        initdb.write_text(
            COUNTING_INITDB.format(count=count, initdb=postgres.parent / "initdb"),
            encoding="utf-8",
        )
        initdb.chmod(0o755)
        yield bindir / "postgres", count
    finally:
        shutil.rmtree(bindir, ignore_errors=True)


def test_two_runs_of_a_new_project_at_once_run_initdb_once(
    pg_project: pytest.Pytester, counted_initdb: tuple[Path, Path]
) -> None:
    postgres, count = counted_initdb
    command = [sys.executable, "-m", "pytest", "-p", "no:randomly", "-q"]
    # One argument: a path given apart would also be taken for where the tests are.
    command += [f"--xpostgresql-exec={postgres}"]
    both = [
        subprocess.Popen(
            command, cwd=pg_project.path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        for _ in range(2)
    ]
    outputs = [run.communicate(timeout=DEADLINE)[0].decode() for run in both]
    assert [run.returncode for run in both] == [0, 0], "\n".join(outputs)
    assert all("4 passed" in output for output in outputs), "\n".join(outputs)
    runs = count.read_text(encoding="utf-8").split()
    assert len(runs) == 1, f"initdb ran {len(runs)} times for one new cluster"
    records = records_of(pg_project)
    [cluster] = cached(records)
    assert (cluster / "PG_VERSION").is_file()
    wait_for(lambda: leftovers(records) == [], 30, "the leftovers to go")
