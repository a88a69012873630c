"""The PostgreSQL test database: isolation by database or by transaction, kept after a failure."""

from __future__ import annotations

import shlex
import shutil
import subprocess
from collections.abc import Iterator

import pytest

from tests.test_examples import have_postgres, need
from xprocess.manager import XProcessInfo

CONFTEST = """
from xprocess.servers import postgresql as pg
postgresql_proc = pg.postgresql_proc(load=["schema.sql"])
postgresql = pg.postgresql()
"""

TESTS = """
import os
from pathlib import Path
import pytest
import psycopg

def note(connection, test):
    db = connection.execute("SELECT current_database()").fetchone()[0]
    with open(Path(__file__).parent / "seen", "a") as f:
        f.write(f"{test} {db}\\n")

@pytest.mark.parametrize("i", range(3))
def test_rolled_back(postgresql, i):
    note(postgresql, "plain")
    postgresql.execute("INSERT INTO fruit VALUES ('pear')")
    assert postgresql.execute("SELECT count(*) FROM fruit").fetchone() == (2,)

@pytest.mark.xpostgresql_isolation("database")
@pytest.mark.parametrize("i", range(2))
def test_marked_for_a_database(postgresql, i):
    note(postgresql, "marked")
    postgresql.execute("INSERT INTO fruit VALUES ('fig')")
    postgresql.commit()
"""


@pytest.fixture
def project(pytester: pytest.Pytester) -> Iterator[pytest.Pytester]:
    need(have_postgres(), "PostgreSQL (postgres, initdb)", "apt-get install postgresql")
    pytester.makeconftest(CONFTEST)
    (pytester.path / "schema.sql").write_text(
        "CREATE TABLE fruit (name text); INSERT INTO fruit VALUES ('apple');\n"
    )
    yield pytester
    # A server kept by --xpostgresql-keep-failed: stop it, and remove its data directory.
    info = XProcessInfo(pytester.path / ".pytest_cache" / "d" / ".xprocess", "postgresql")
    datadir = info.data.get("datadir") if info.record is not None else None
    info.terminate()
    if datadir:
        shutil.rmtree(datadir, ignore_errors=True)


def seen(project: pytest.Pytester) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in (project.path / "seen").read_text().splitlines():
        test, db = line.split()
        found.setdefault(test, []).append(db)
    return found


def test_transaction_isolation_rolls_each_test_back_in_one_database_and_a_marker_wins(
    project: pytest.Pytester,
) -> None:
    project.makeini("[pytest]\nxpostgresql_isolation = transaction\n")
    project.makepyfile(TESTS)
    project.runpytest_subprocess("-p", "no:randomly").assert_outcomes(passed=5)
    databases = seen(project)
    # The rolled-back tests shared one database and each saw only the template's row and its
    # own; the marked tests each had a fresh database.
    assert len(set(databases["plain"])) == 1
    assert len(set(databases["marked"])) == 2
    assert not set(databases["plain"]) & set(databases["marked"])


def test_a_commit_under_transaction_isolation_is_refused(project: pytest.Pytester) -> None:
    project.makepyfile(
        "import psycopg, pytest\n"
        "@pytest.mark.xpostgresql_isolation('transaction')\n"
        "def test_commits(postgresql):\n"
        "    with pytest.raises(psycopg.ProgrammingError, match='commit'):\n"
        "        postgresql.commit()\n"
    )
    project.runpytest_subprocess().assert_outcomes(passed=1)


def test_a_bad_isolation_is_a_usage_error_naming_where_it_came_from(
    project: pytest.Pytester,
) -> None:
    project.makepyfile("def test_it():\n    pass\n")
    result = project.runpytest_subprocess("--xpostgresql-isolation", "savepoint")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "ERROR: xpostgresql_isolation is 'savepoint' (--xpostgresql-isolation on the command "
            "line); use one of database, transaction"
        ]
    )


KEEP_TESTS = """
def test_passes(postgresql):
    postgresql.execute("INSERT INTO fruit VALUES ('kiwi')")
    postgresql.commit()

def test_fails(postgresql):
    postgresql.execute("INSERT INTO fruit VALUES ('plum')")
    postgresql.commit()
    assert False, "look at my database"
"""


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["no-xdist", "n2"])
def test_keep_failed_keeps_the_failed_tests_database_and_says_how_to_open_it(
    project: pytest.Pytester, workers: list[str]
) -> None:
    project.makepyfile(KEEP_TESTS)
    result = project.runpytest_subprocess("--xpostgresql-keep-failed", *workers)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*= databases kept for failed tests (xprocess) =*",
            '*::test_fails: psql "host=127.0.0.1 port=* user=postgres dbname=tests_kept_*"',
        ]
    )
    line = next(line for line in result.stdout.lines if "::test_fails: psql" in line)
    command = shlex.split(line.split(": ", 1)[1])
    assert len([ln for ln in result.stdout.lines if ": psql " in ln]) == 1, "only the failed one"
    psql = shutil.which("psql")
    need(psql is not None, "psql", "apt-get install postgresql-client")
    assert psql is not None
    shown = subprocess.run(
        [psql, *command[1:], "-Atc", "SELECT name FROM fruit ORDER BY name"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert shown.stdout.split() == ["apple", "plum"]


ASYNC_TESTS = """
import pytest

@pytest.mark.asyncio
@pytest.mark.parametrize("i", range(2))
async def test_postgresql(postgresql_async, i):
    cursor = await postgresql_async.execute("SELECT count(*) FROM fruit")
    assert await cursor.fetchone() == (1,)
    await postgresql_async.execute("INSERT INTO fruit VALUES ('lime')")
    await postgresql_async.commit()

@pytest.mark.asyncio
@pytest.mark.xpostgresql_isolation("transaction")
async def test_postgresql_rolled_back(postgresql_async):
    await postgresql_async.execute("DELETE FROM fruit")
    cursor = await postgresql_async.execute("SELECT count(*) FROM fruit")
    assert await cursor.fetchone() == (0,)

@pytest.mark.asyncio
@pytest.mark.parametrize("i", range(2))
async def test_redis(redisdb_async, i):
    assert await redisdb_async.keys() == []
    await redisdb_async.set("left", "behind")
    assert await redisdb_async.get("left") == "behind"
"""


def test_async_clients_work_from_pytest_asyncio_tests_in_strict_mode(
    project: pytest.Pytester,
) -> None:
    need(shutil.which("redis-server") is not None, "redis-server", "apt-get install redis-server")
    project.makeconftest(
        CONFTEST
        + "postgresql_async = pg.postgresql_async()\n"
        + "from xprocess.servers import redis\n"
        + "redis_proc = redis.redis_proc()\n"
        + "redisdb_async = redis.redisdb_async(decode=True)\n"
    )
    project.makeini("[pytest]\nasyncio_mode = strict\n")
    project.makepyfile(ASYNC_TESTS)
    project.runpytest_subprocess("-p", "no:randomly").assert_outcomes(passed=5)


def test_xkill_after_a_normal_run_exits_0_though_the_templates_server_is_gone(
    project: pytest.Pytester,
) -> None:
    project.makepyfile(
        "def test_it(postgresql):\n"
        "    assert postgresql.execute('SELECT count(*) FROM fruit').fetchone() == (1,)\n"
    )
    project.runpytest_subprocess().assert_outcomes(passed=1)
    result = project.runpytest_subprocess("--xkill")
    result.stdout.no_fnmatch_line("*cleanup failed*")
    result.stdout.fnmatch_lines(["- postgresql-template-tests VALUE CLEARED (its process *gone*"])
    assert result.ret == 0
