"""xprocess.servers through real PostgreSQL and Redis servers, in whole pytest runs.

PostgreSQL costs seconds to initdb, so the PostgreSQL tests share one kept server per test module
(and xdist worker): every project they create keeps its records in one shared cache directory,
and each project uses a database prefix (``dbname=``) of its own, so their templates and test
databases do not meet.
"""

from __future__ import annotations

import errno
import fnmatch
import hashlib
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import HEADER, wait_for
from tests.test_examples import have_postgres, need
from xprocess.errors import InvalidStarterError, ServerNotFoundError
from xprocess.manager import XProcessInfo
from xprocess.servers import postgresql as pg
from xprocess.servers import redis as rd
from xprocess.servers import warm_up

PG_CONFTEST = """
from pathlib import Path
import psycopg
from xprocess.servers import postgresql as pg

ROOT = Path(__file__).parent

def add_cherry(host, port, user, dbname, password):
    with open(ROOT / "loads", "a") as f:
        f.write(dbname + "\\n")
    with psycopg.connect(host=host, port=port, user=user, dbname=dbname) as conn:
        conn.execute("INSERT INTO fruit VALUES ('cherry')")

postgresql_proc = pg.postgresql_proc(keep=True, dbname={dbname!r}, load=["schema.sql", add_cherry])
postgresql = pg.postgresql("postgresql_proc")
"""

SCHEMA = "CREATE TABLE fruit (name text);\nINSERT INTO fruit VALUES ('apple');\n"

PG_TESTS = """
import os
from pathlib import Path
import pytest

@pytest.mark.parametrize("i", range({count}))
def test_db(postgresql, i):
    db = postgresql.execute("SELECT current_database()").fetchone()[0]
    with open(Path(__file__).parent / "seen", "a") as f:
        f.write(os.environ.get("PYTEST_XDIST_WORKER", "main") + " " + db + "\\n")
    names = [row[0] for row in postgresql.execute("SELECT name FROM fruit ORDER BY name")]
    assert names == {names!r}
    assert postgresql.execute("SELECT to_regclass('mine')").fetchone() == (None,)
    postgresql.execute("CREATE TABLE mine (x int)")
    postgresql.commit()
"""


def need_postgresql() -> None:
    need(have_postgres(), "PostgreSQL (postgres, initdb)", "apt-get install postgresql")


def records(cache: Path) -> Path:
    return cache / "d" / ".xprocess"


@pytest.fixture(scope="module")
def pg_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A cache directory shared by the module's projects: its kept server is theirs."""
    cache = tmp_path_factory.mktemp("pg-cache")
    yield cache
    info = XProcessInfo(records(cache), "postgresql")
    info.terminate()
    datadir = info.data.get("datadir")
    if datadir:
        shutil.rmtree(datadir, ignore_errors=True)


@pytest.fixture
def project(pytester: pytest.Pytester, pg_cache: Path) -> pytest.Pytester:
    need_postgresql()
    pytester.makeconftest(PG_CONFTEST.format(dbname=prefix_of(pytester)))
    (pytester.path / "schema.sql").write_text(SCHEMA, encoding="utf-8")
    pytester.makeini("[pytest]\n")
    return pytester


def run_pg(project: pytest.Pytester, pg_cache: Path, *args: str) -> pytest.RunResult:
    return project.runpytest_subprocess("-o", f"cache_dir={pg_cache}", *args, timeout=180)


def seen(project: pytest.Pytester) -> list[tuple[str, str]]:
    lines = (project.path / "seen").read_text().split("\n")
    return [(line.split()[0], line.split()[1]) for line in lines if line]


def loads(project: pytest.Pytester) -> list[str]:
    path = project.path / "loads"
    return path.read_text().split() if path.exists() else []


def databases(pg_cache: Path, pattern: str) -> list[str]:
    """Names of the kept server's databases that match the LIKE ``pattern``."""
    import psycopg

    data = XProcessInfo(records(pg_cache), "postgresql").data
    with psycopg.connect(**pg.connect_kwargs(data, "postgres")) as conn:
        rows = conn.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE %s ORDER BY 1", (pattern,)
        )
        return [row[0] for row in rows]


def prefix_of(project: pytest.Pytester) -> str:
    """The project's database prefix: its templates and test databases start with it."""
    return "t" + hashlib.sha1(str(project.path).encode()).hexdigest()[:10]


def test_each_test_gets_its_own_copy_of_the_template_in_every_worker(
    project: pytest.Pytester, pg_cache: Path
) -> None:
    project.makepyfile(PG_TESTS.format(count=8, names=["apple", "cherry"]))
    run_pg(project, pg_cache, "-n", "4").assert_outcomes(passed=8)
    entries = seen(project)
    assert len({worker for worker, _ in entries}) > 1
    assert len({db for _, db in entries}) == 8, "two tests were given the same database"


def test_the_template_is_built_once_across_workers_and_kept_across_runs(
    project: pytest.Pytester, pg_cache: Path
) -> None:
    project.makepyfile(PG_TESTS.format(count=8, names=["apple", "cherry"]))
    run_pg(project, pg_cache, "-n", "4").assert_outcomes(passed=8)
    run_pg(project, pg_cache, "-n", "4").assert_outcomes(passed=8)
    (template,) = loads(project)
    assert databases(pg_cache, f"{prefix_of(project)}%") == [template]


def test_the_template_is_rebuilt_when_a_loaded_file_changes(
    project: pytest.Pytester, pg_cache: Path
) -> None:
    project.makepyfile(PG_TESTS.format(count=2, names=["apple", "cherry"]))
    run_pg(project, pg_cache).assert_outcomes(passed=2)
    with (project.path / "schema.sql").open("a") as schema:
        schema.write("INSERT INTO fruit VALUES ('banana');\n")
    project.makepyfile(PG_TESTS.format(count=2, names=["apple", "banana", "cherry"]))
    run_pg(project, pg_cache).assert_outcomes(passed=2)
    first, second = loads(project)
    assert first != second
    # The stale template was dropped; only the new one is left.
    assert databases(pg_cache, f"{prefix_of(project)}%") == [second]


def test_test_databases_are_dropped_after_x(project: pytest.Pytester, pg_cache: Path) -> None:
    project.makepyfile(
        PG_TESTS.format(count=6, names=["apple", "cherry"])
        + "\ndef test_fails(postgresql):\n    assert False\n"
    )
    result = run_pg(project, pg_cache, "-n", "2", "-x", "-p", "no:randomly")
    assert result.parseoutcomes()["failed"] == 1
    assert databases(pg_cache, f"{prefix_of(project)}%") == loads(project)


def test_the_database_of_a_crashed_worker_is_dropped_at_the_end_of_the_run(
    project: pytest.Pytester, pg_cache: Path
) -> None:
    project.makepyfile(
        PG_TESTS.format(count=4, names=["apple", "cherry"])
        + "\nimport signal\n\ndef test_crashes(postgresql):\n"
        "    db = postgresql.execute('SELECT current_database()').fetchone()[0]\n"
        "    (Path(__file__).parent / 'crashed').write_text(db)\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    result = run_pg(project, pg_cache, "-n", "2")
    result.stdout.fnmatch_lines(["*crashed*"])
    assert result.parseoutcomes()["passed"] == 4
    crashed = (project.path / "crashed").read_text()
    assert crashed.startswith(prefix_of(project))
    assert databases(pg_cache, f"{prefix_of(project)}%") == loads(project)


@pytest.mark.parametrize(
    ("args", "ini", "where"),
    [
        ([], "xpostgresql_exec = /nonexistent/bin/postgres\n", "ini option xpostgresql_exec in *"),
        (["--xpostgresql-exec", "/nonexistent/bin/postgres"], "", "--xpostgresql-exec on the *"),
    ],
    ids=["ini", "command-line"],
)
def test_a_configured_postgres_that_is_not_there_is_a_usage_error_at_start(
    pytester: pytest.Pytester, args: list[str], ini: str, where: str
) -> None:
    pytester.makeini("[pytest]\n" + ini)
    pytester.makeconftest(
        "from xprocess.servers import postgresql as pg\n"
        "postgresql_proc = pg.postgresql_proc()\n"
        "postgresql = pg.postgresql()\n"
    )
    pytester.makepyfile("def test_it(postgresql):\n    pass\n")
    result = pytester.runpytest_subprocess(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "ERROR: xpostgresql_exec is '/nonexistent/bin/postgres', but /nonexistent/bin does not "
            f"hold postgres, initdb; point xpostgresql_exec at * (set by {where})"
        ]
    )


FOUR_TESTS = """
import pytest

@pytest.mark.parametrize("i", range(4))
def test_it({fixture}, i):
    pass
"""


@pytest.mark.parametrize(
    ("conftest", "args", "error"),
    [
        (
            "from xprocess.servers import redis\n"
            "redis_proc = redis.redis_proc(executable='/nonexistent/redis-server')\n"
            "redisdb = redis.redisdb()\n",
            [],
            "redis_proc: ServerNotFoundError: xredis_exec is '/nonexistent/redis-server', *",
        ),
        (
            "import sys\nsys.modules['psycopg'] = None  # as if it were not installed\n"
            "from xprocess.servers import postgresql as pg\n"
            "postgresql_proc = pg.postgresql_proc()\npostgresql = pg.postgresql()\n",
            [],
            'postgresql_proc: ModuleNotFoundError: * pip install "xprocess[[]postgresql]"',
        ),
    ],
    ids=["wrong-redis-exec", "missing-psycopg"],
)
@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["no-xdist", "n2"])
def test_a_server_fixture_error_is_said_once_without_xprocess_frames(
    pytester: pytest.Pytester, conftest: str, args: list[str], error: str, workers: list[str]
) -> None:
    pytester.makeconftest(conftest)
    fixture = "redisdb" if "redis" in conftest else "postgresql"
    pytester.makepyfile(FOUR_TESTS.format(fixture=fixture))
    result = pytester.runpytest_subprocess("-p", "no:randomly", *args, *workers)
    result.assert_outcomes(errors=4)
    lines = result.stdout.lines
    full = [line for line in lines if fnmatch.fnmatch(line, error)]
    # Once per process that set the fixture up: the run, or each xdist worker that ran a test.
    assert 1 <= len(full) <= max(1, len(workers)), "\n".join(lines)
    result.stdout.fnmatch_lines(
        ["*could not be set up: see the error at test_*.py::test_it* above"]
    )
    assert not [line for line in lines if "xprocess/" in line], "\n".join(lines)
    assert len(lines) < 40, "\n".join(lines)


REDIS_PROJECT = """
import os
from pathlib import Path
import pytest
from xprocess.servers import redis

redis_proc = redis.redis_proc()
redisdb = redis.redisdb("redis_proc", decode=True)

@pytest.mark.parametrize("i", range(8))
def test_keys(redisdb, i):
    with open(Path(__file__).parent / "seen", "a") as f:
        db = redisdb.connection_pool.connection_kwargs["db"]
        f.write(os.environ.get("PYTEST_XDIST_WORKER", "main") + " " + str(db) + "\\n")
    assert redisdb.keys() == []
    redisdb.set("left", "behind")
"""


def test_redis_gives_each_worker_its_own_database_flushed_between_tests(
    pytester: pytest.Pytester,
) -> None:
    need(shutil.which("redis-server") is not None, "redis-server", "apt-get install redis-server")
    pytester.makepyfile(REDIS_PROJECT)
    pytester.runpytest_subprocess("-n", "2").assert_outcomes(passed=8)
    pairs = set(seen(pytester))
    assert len({worker for worker, _ in pairs}) == 2
    assert {(worker, f"{int(worker[2:])}") for worker, _ in pairs} == pairs


REUSED_CONNECTION = """
import pytest
from xprocess.servers import redis

redis_proc = redis.redis_proc()
redisdb = redis.redisdb("redis_proc", decode=True)
seen = []

@pytest.mark.parametrize("i", range(3))
def test_moves_away(redisdb, i):
    seen.append(redisdb.client_id())
    assert redisdb.keys() == []
    redisdb.set("left", "behind")
    redisdb.select(5)  # on the pooled connection: the next test must be back on its own
    redisdb.set("elsewhere", "kept")

def test_one_connection_all_along(redisdb, redis_proc):
    assert redisdb.keys() == []
    assert len(set(seen)) == 1 and redisdb.client_id() == seen[0]
    assert redis_proc.client(db=5).get("elsewhere") == b"kept"
"""


def test_redisdb_reuses_its_connection_and_puts_it_back_on_the_workers_database(
    pytester: pytest.Pytester,
) -> None:
    need(shutil.which("redis-server") is not None, "redis-server", "apt-get install redis-server")
    pytester.makepyfile(REUSED_CONNECTION)
    pytester.runpytest_subprocess("-p", "no:randomly").assert_outcomes(passed=4)


TIMER_RATE = """
import pytest
from xprocess.servers import redis

redis_proc = redis.redis_proc(options=OPTIONS)

def test_timer_rate(redis_proc):
    assert redis_proc.client().config_get("hz")["hz"] == EXPECTED
"""


@pytest.mark.parametrize(
    ("options", "expected"), [([], "100"), (["--hz", "20"], "20")], ids=["default", "option"]
)
def test_a_redis_stopped_at_the_end_acts_on_its_sigterm_within_milliseconds(
    pytester: pytest.Pytester, options: list[str], expected: str
) -> None:
    """Its timer runs at 100 Hz (10 by default, so up to 100 ms before an idle server exits);
    an ``options=`` of the user's still wins."""
    need(shutil.which("redis-server") is not None, "redis-server", "apt-get install redis-server")
    code = TIMER_RATE.replace("OPTIONS", repr(options)).replace("EXPECTED", repr(expected))
    pytester.makepyfile(code)
    pytester.runpytest_subprocess().assert_outcomes(passed=1)


WARM_UP_CONFTEST = """
from xprocess.servers import redis

redis_proc = redis.redis_proc()
redisdb = redis.redisdb("redis_proc")
"""

WARMED_UP = """
import sys

def test_first():
    # No fixture of the server: only the worker's warm-up can have imported these.
    assert {"redis", "xprocess.manager", "xprocess.servers._redis_starter"} <= set(sys.modules)

def test_second(redisdb):
    assert redisdb.dbsize() == 0
"""

NOT_WARMED_UP = """
import sys

def test_alone():
    assert not {"redis", "xprocess.manager"} & set(sys.modules)
"""


@pytest.mark.parametrize(
    ("tests", "passed"), [(WARMED_UP, 2), (NOT_WARMED_UP, 1)], ids=["used", "unused"]
)
def test_an_xdist_worker_imports_what_its_server_fixtures_need_before_its_first_test(
    pytester: pytest.Pytester, tests: str, passed: int
) -> None:
    """While the worker waits for the controller to hand out tests; a worker whose tests use
    none of them imports nothing."""
    need(shutil.which("redis-server") is not None, "redis-server", "apt-get install redis-server")
    pytester.makeconftest(WARM_UP_CONFTEST)
    pytester.makepyfile(tests)
    pytester.runpytest_subprocess("-n", "1", "-p", "no:randomly").assert_outcomes(passed=passed)


def test_the_warm_up_imports_each_module_of_the_marked_fixtures_once_in_order() -> None:
    @warm_up.needs("redis")
    def one() -> None: ...

    @warm_up.needs("psycopg", "redis")
    def two() -> None: ...

    def unmarked() -> None: ...

    modules = warm_up.imports_of([one, unmarked, two])
    assert modules == ["redis", *warm_up.ENGINE, "psycopg"]


def test_importing_the_redis_fixtures_imports_no_engine() -> None:
    """A conftest imports it in the xdist controller and every worker: the engine (records,
    psutil, the starter) comes only with the server's start."""
    code = (
        "import sys; import xprocess.servers.redis as rd; "
        "heavy = {'psutil', 'xprocess.records', 'xprocess.starter', 'xprocess.leases'}; "
        "print(sorted(heavy & set(sys.modules))); "
        "print(rd.RedisStarter.__mro__[1].__name__)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.splitlines() == ["[]", "ProcessStarter"]


def test_a_database_is_leased_to_one_holder_at_a_time_and_free_once_released(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw1")
    first = rd.lease_db(tmp_path, "redis", 3)
    second = rd.lease_db(tmp_path, "redis", 3)
    third = rd.lease_db(tmp_path, "redis", 3)
    assert (first.slot, second.slot, third.slot) == (1, 2, 0)
    with pytest.raises(RuntimeError, match="all 3 databases of the server are leased"):
        rd.lease_db(tmp_path, "redis", 3)
    second.release()
    assert rd.lease_db(tmp_path, "redis", 3).slot == 2


def test_a_dead_workers_database_lease_is_free(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from xprocess.servers import redis as rd; "
            f"lease = rd.lease_db(__import__('pathlib').Path({str(tmp_path)!r}), 'redis', 1); "
            "print(lease.slot, flush=True); sys.stdin.read()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "0\n"
        with pytest.raises(RuntimeError, match="all 1 databases"):
            rd.lease_db(tmp_path, "redis", 1)
    finally:
        holder.kill()
        holder.wait()
    assert rd.lease_db(tmp_path, "redis", 1).slot == 0


REDIS_HOLDER = """
import os
from pathlib import Path
from projects import wait_for

def test_keeps_its_keys(redisdb):
    here = Path(__file__).parent
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    db = redisdb.connection_pool.connection_kwargs["db"]
    redisdb.set("mine", worker)
    (here / f"a-{worker}").write_text(str(db))
    wait_for(lambda: (here / "b-done").exists(), timeout=120, what="run B to end")
    assert redisdb.get("mine") == worker
"""

REDIS_OTHER_RUN = """
import os
from pathlib import Path

def test_uses_its_own_database(redisdb):
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    db = redisdb.connection_pool.connection_kwargs["db"]
    (Path(__file__).parent / f"b-{worker}").write_text(str(db))
    redisdb.set("mine", "b")
"""


@pytest.mark.parametrize(
    ("a_args", "b_args"),
    [((), ()), (("-n", "2", "--dist", "each"), ("-n", "2", "--dist", "each"))],
    ids=["plain", "xdist"],
)
def test_two_runs_at_once_on_one_redis_never_flush_each_others_keys(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    a_args: tuple[str, ...],
    b_args: tuple[str, ...],
) -> None:
    need(shutil.which("redis-server") is not None, "redis-server", "apt-get install redis-server")
    # Under xdist, the runs started here would inherit this worker's name.
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    pytester.makeconftest(
        HEADER
        + "from xprocess.servers import redis\n"
        + "redis_proc = redis.redis_proc()\n"
        + "redisdb = redis.redisdb('redis_proc', decode=True)\n"
    )
    pytester.makepyfile(test_a=REDIS_HOLDER, test_b=REDIS_OTHER_RUN)
    a_workers = ["gw0", "gw1"] if a_args else ["main"]
    b_workers = ["gw0", "gw1"] if b_args else ["main"]
    # Run A goes on in the background, its tests holding keys until run B has ended.
    command = [sys.executable, "-m", "pytest", "-p", "no:randomly", *a_args, "test_a.py"]
    run_a = pytester.popen(command, stdin=subprocess.DEVNULL)
    try:
        wait_for(
            lambda: (
                all((pytester.path / f"a-{w}").exists() for w in a_workers)
                or run_a.poll() is not None
            ),
            timeout=120,
            what="run A's tests to hold their databases",
        )
        assert run_a.poll() is None, "run A ended before its tests held their databases"
        run_b = pytester.runpytest_subprocess(*b_args, "test_b.py", timeout=120)
        run_b.assert_outcomes(passed=len(b_workers))
    finally:
        (pytester.path / "b-done").write_text("")
        out, err = run_a.communicate(timeout=120)
    assert run_a.returncode == 0, out.decode() + err.decode()
    a_dbs = {(pytester.path / f"a-{w}").read_text() for w in a_workers}
    b_dbs = {(pytester.path / f"b-{w}").read_text() for w in b_workers}
    # Run B's workers may take turns on one database; never on one that run A holds.
    assert len(a_dbs) == len(a_workers)
    assert not a_dbs & b_dbs, f"run A used {a_dbs}, run B {b_dbs}"


@pytest.mark.parametrize(
    ("module", "require", "extra"),
    [("psycopg", pg.require_psycopg, "postgresql"), ("redis", rd.require_redis, "redis")],
)
def test_a_missing_client_library_names_the_extra_to_install(
    monkeypatch: pytest.MonkeyPatch, module: str, require: Any, extra: str
) -> None:
    monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(ModuleNotFoundError, match=rf'pip install "xprocess\[{extra}\]"'):
        require()


def test_a_database_prefix_that_is_not_an_identifier_is_refused() -> None:
    with pytest.raises(InvalidStarterError, match="dbname='my-tests' cannot prefix"):
        pg.postgresql_proc(dbname="my-tests")


def test_a_loader_that_is_neither_a_file_nor_a_function_is_refused() -> None:
    with pytest.raises(InvalidStarterError, match="each item of load= must be the path"):
        pg.postgresql_proc(load=[42])  # type: ignore[list-item]


def test_a_directory_without_initdb_is_not_taken_for_postgresql(tmp_path: Path) -> None:
    (tmp_path / "postgres").write_text("")
    with pytest.raises(ServerNotFoundError, match="does not hold postgres, initdb") as excinfo:
        pg.find_postgres(tmp_path)
    assert excinfo.value.errno == errno.ENOENT and excinfo.value.filename == "postgres"
