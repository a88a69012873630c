"""xprocess.servers against a server it did not start (--xpostgresql-host, --xredis-host).

Each test starts the "existing" server itself, under a records root of its own, and stops it at
its end; the project under test only connects to it.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.test_examples import have_postgres, need
from xprocess import XProcess
from xprocess.servers import postgresql as pg
from xprocess.servers import redis as rd


@pytest.fixture
def outside_postgresql(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """A PostgreSQL server the project under test did not start: its address, with a user
    ``tester`` who may create databases."""
    need(have_postgres(), "PostgreSQL (postgres, initdb)", "apt-get install postgresql")
    import psycopg

    starter = type(
        "Outside",
        (pg.PostgreSQLStarter,),
        {"postgres": str(pg.find_postgres()), "process_name": "outside"},
    )
    with XProcess(None, tmp_path / "outside-records") as xprocess:
        xprocess.ensure("outside", starter)
        info = xprocess.getinfo("outside")
        try:
            data = info.data
            with psycopg.connect(**pg.connect_kwargs(data, "postgres"), autocommit=True) as conn:
                conn.execute("CREATE ROLE tester LOGIN CREATEDB")
            yield data
        finally:
            info.terminate()
            shutil.rmtree(info.data["datadir"], ignore_errors=True)


def databases_of(data: dict[str, Any]) -> list[str]:
    import psycopg

    with psycopg.connect(**pg.connect_kwargs(data, "postgres")) as conn:
        rows = conn.execute("SELECT datname FROM pg_database WHERE datname LIKE 'ext%' ORDER BY 1")
        return [row[0] for row in rows]


EXISTING_PG_TESTS = """
import pytest

@pytest.mark.parametrize("i", range(4))
def test_db(postgresql, i):
    user, db = postgresql.execute("SELECT current_user, current_database()").fetchone()
    assert user == "tester" and db.startswith("ext_")
    assert [r[0] for r in postgresql.execute("SELECT name FROM fruit")] == ["apple"]
    assert postgresql.execute("SELECT to_regclass('mine')").fetchone() == (None,)
    postgresql.execute("CREATE TABLE mine (x int)")
    postgresql.commit()
"""


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["no-xdist", "n2"])
def test_an_existing_postgresql_gives_each_test_its_own_database_and_keeps_nothing(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    outside_postgresql: dict[str, Any],
    workers: list[str],
) -> None:
    data = outside_postgresql
    pytester.makeconftest(
        "from xprocess.servers import postgresql as pg\n"
        "postgresql_proc = pg.postgresql_proc()\npostgresql = pg.postgresql()\n"
    )
    pytester.makeini("[pytest]\nxpostgresql_dbname = ext\nxpostgresql_load = schema.sql\n")
    (pytester.path / "schema.sql").write_text(
        "CREATE TABLE fruit (name text); INSERT INTO fruit VALUES ('apple');\n"
    )
    pytester.makepyfile(EXISTING_PG_TESTS)
    monkeypatch.setenv("XPROCESS_POSTGRESQL_USER", "tester")  # the environment's turn
    result = pytester.runpytest_subprocess(
        "--xpostgresql-host", data["host"], "--xpostgresql-port", str(data["port"]), *workers
    )
    result.assert_outcomes(passed=4)
    # Nothing was started or recorded for the project, and its template and test databases are
    # gone from the server when the run is over.
    assert not (pytester.path / ".pytest_cache" / "d" / ".xprocess" / "postgresql").exists()
    assert databases_of(data) == []
    assert pytester.runpytest_subprocess("--xkill").ret == 0


def test_an_unreachable_existing_postgresql_says_what_to_check(pytester: pytest.Pytester) -> None:
    need(have_postgres(), "PostgreSQL (postgres, initdb)", "apt-get install postgresql")
    from xprocess.ports import free_port

    pytester.makeconftest(
        "from xprocess.servers import postgresql as pg\n"
        "postgresql_proc = pg.postgresql_proc()\npostgresql = pg.postgresql()\n"
    )
    pytester.makepyfile("def test_it(postgresql):\n    pass\n")
    port = str(free_port())
    result = pytester.runpytest_subprocess(
        "--xpostgresql-host", "127.0.0.1", "-o", f"xpostgresql_port={port}"
    )
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            f"postgresql_proc: StartupError: postgresql_proc 'postgresql': cannot connect to the "
            f"existing PostgreSQL server at 127.0.0.1:{port} as 'postgres': *; check "
            "xpostgresql_host, xpostgresql_port, xpostgresql_user and xpostgresql_password"
        ]
    )


@pytest.fixture
def outside_redis(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """A Redis server the project under test did not start, with a password."""
    need(shutil.which("redis-server") is not None, "redis-server", "apt-get install redis-server")
    starter = type(
        "Outside",
        (rd.RedisStarter,),
        {"databases": 4, "options": ("--requirepass", "sesame")},
    )
    with XProcess(None, tmp_path / "outside-records") as xprocess:
        xprocess.ensure("outside", starter)
        info = xprocess.getinfo("outside")
        try:
            yield info.data
        finally:
            info.terminate()


def test_an_existing_redis_is_used_with_its_password_and_a_leased_database(
    pytester: pytest.Pytester, outside_redis: dict[str, Any]
) -> None:
    pytester.makeconftest(
        "from xprocess.servers import redis\n"
        "redis_proc = redis.redis_proc()\nredisdb = redis.redisdb(decode=True)\n"
    )
    pytester.makeini(f"[pytest]\nxredis_host = 127.0.0.1\nxredis_port = {outside_redis['port']}\n")
    pytester.makepyfile(
        "import pytest\n"
        "@pytest.mark.parametrize('i', range(3))\n"
        "def test_it(redisdb, redis_proc, i):\n"
        "    assert redisdb.keys() == []\n"
        "    redisdb.set('k', i)\n"
        "    assert redis_proc.databases == 4\n"
        f"    assert redisdb.info('server')['tcp_port'] == {outside_redis['port']}\n"
    )
    result = pytester.runpytest_subprocess("--xredis-password", "sesame")
    result.assert_outcomes(passed=3)
    assert not (pytester.path / ".pytest_cache" / "d" / ".xprocess" / "redis").exists()
