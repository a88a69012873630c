"""The servers' settings: an option and an ini key each, read command line > environment > ini."""

from __future__ import annotations

import shutil

import pytest

from tests.test_examples import have_postgres, need
from xprocess.manager import XProcessInfo
from xprocess.ports import free_port
from xprocess.servers import settings as st


def test_every_setting_is_an_option_and_an_ini_key_in_help(pytester: pytest.Pytester) -> None:
    help_text = pytester.runpytest_subprocess("--help").stdout.str()
    every = [*st.POSTGRESQL.values(), *st.REDIS.values()]
    assert {s.ini.split("_", 1)[1] for s in st.POSTGRESQL.values()} >= {
        "port", "user", "password", "dbname", "options", "load", "host", "exec", "keep"
    }  # fmt: skip
    for setting in every:
        assert setting.option in help_text, setting.option
        assert f"  {setting.ini} (" in help_text, setting.ini


PORT = st.POSTGRESQL["port"]


@pytest.mark.parametrize(
    ("option", "env", "expected"),
    [("3333", "2222", 3333), (None, "2222", 2222), (None, None, 1111)],
)
def test_the_command_line_beats_the_environment_which_beats_the_ini_file(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    option: str | None,
    env: str | None,
    expected: int,
) -> None:
    pytester.makeini("[pytest]\nxpostgresql_port = 1111\n")
    if env is None:
        monkeypatch.delenv("XPROCESS_POSTGRESQL_PORT", raising=False)
    else:
        monkeypatch.setenv("XPROCESS_POSTGRESQL_PORT", env)
    config = pytester.parseconfig(*(["--xpostgresql-port", option] if option else []))
    assert st.resolve(config, PORT) == expected


def test_a_factory_argument_beats_every_setting(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nxpostgresql_port = 1111\n")
    config = pytester.parseconfig("--xpostgresql-port", "3333")
    assert st.choose(4444, config, PORT, None) == 4444
    assert st.choose(None, pytester.parseconfig(), PORT, None) == 1111


@pytest.mark.parametrize(
    ("args", "ini", "env", "message"),
    [
        (
            ["--xredis-port", "http"],
            "",
            None,
            "ERROR: xredis_port is 'http' (--xredis-port on the command line); use a port, 1 to "
            "65535",
        ),
        (
            [],
            "xredis_port = 70000\n",
            None,
            "ERROR: xredis_port is '70000' (ini option xredis_port in tox.ini); use a port, *",
        ),
        (
            [],
            "",
            "0",
            "ERROR: xredis_port is '0' (environment variable XPROCESS_REDIS_PORT); use a port, *",
        ),
        (
            [],
            "xpostgresql_keep = maybe\n",
            None,
            "ERROR: xpostgresql_keep is 'maybe' (ini option xpostgresql_keep in tox.ini); use true "
            "or false",
        ),
    ],
    ids=["command-line", "ini", "environment", "flag"],
)
def test_a_bad_value_is_a_usage_error_naming_where_it_came_from(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    ini: str,
    env: str | None,
    message: str,
) -> None:
    pytester.makeini("[pytest]\n" + ini)
    if env is not None:
        monkeypatch.setenv("XPROCESS_REDIS_PORT", env)
    pytester.makepyfile("def test_it():\n    pass\n")
    result = pytester.runpytest_subprocess(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])


def test_options_meant_for_a_started_server_are_refused_with_an_existing_one(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile("def test_it():\n    pass\n")
    result = pytester.runpytest_subprocess(
        "--xpostgresql-host", "db.example", "--xpostgresql-options", "work_mem=8MB"
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "ERROR: xpostgresql_options (--xpostgresql-options on the command line) applies to a "
            "server xprocess starts, but xpostgresql_host says to use an existing one; *"
        ]
    )


def test_a_started_redis_takes_its_port_and_options_from_the_settings(
    pytester: pytest.Pytester,
) -> None:
    need(shutil.which("redis-server") is not None, "redis-server", "apt-get install redis-server")
    port = free_port()
    pytester.makeini("[pytest]\nxredis_options = --maxmemory 12mb\n")
    pytester.makeconftest(
        "from xprocess.servers import redis\n"
        "redis_proc = redis.redis_proc()\nredisdb = redis.redisdb(decode=True)\n"
    )
    pytester.makepyfile(
        "def test_it(redisdb):\n"
        f"    assert redisdb.info('server')['tcp_port'] == {port}\n"
        "    assert redisdb.config_get('maxmemory') == {'maxmemory': str(12 * 1024 * 1024)}\n"
    )
    pytester.runpytest_subprocess("--xredis-port", str(port)).assert_outcomes(passed=1)


def test_a_started_postgresql_takes_its_user_options_and_dbname_from_the_ini_file(
    pytester: pytest.Pytester,
) -> None:
    need(have_postgres(), "PostgreSQL (postgres, initdb)", "apt-get install postgresql")
    pytester.makeini(
        "[pytest]\nxpostgresql_user = alice\nxpostgresql_options = work_mem=7MB\n"
        "xpostgresql_dbname = mine\n"
    )
    pytester.makeconftest(
        "from xprocess.servers import postgresql as pg\n"
        "postgresql_proc = pg.postgresql_proc()\npostgresql = pg.postgresql()\n"
    )
    pytester.makepyfile(
        "def test_it(postgresql):\n"
        "    row = postgresql.execute(\n"
        "        \"SELECT current_user, current_setting('work_mem'), current_database()\"\n"
        "    ).fetchone()\n"
        "    assert row[:2] == ('alice', '7MB') and row[2].startswith('mine_')\n"
    )
    try:
        pytester.runpytest_subprocess().assert_outcomes(passed=1)
    finally:
        info = XProcessInfo(pytester.path / ".pytest_cache" / "d" / ".xprocess", "postgresql")
        datadir = info.data.get("datadir") if info.record is not None else None
        if datadir:
            shutil.rmtree(datadir, ignore_errors=True)


def test_a_cached_cluster_is_one_per_superuser(pytester: pytest.Pytester) -> None:
    # The pristine cluster initdb made for one superuser is not copied for a start of another.
    need(have_postgres(), "PostgreSQL (postgres, initdb)", "apt-get install postgresql")
    pytester.makeconftest(
        "from xprocess.servers import postgresql as pg\n"
        "postgresql_proc = pg.postgresql_proc()\npostgresql = pg.postgresql()\n"
    )
    pytester.makepyfile(
        "def test_it(postgresql, pytestconfig):\n"
        "    user = pytestconfig.getoption('xpostgresql_user') or 'postgres'\n"
        "    assert postgresql.execute('SELECT current_user').fetchone() == (user,)\n"
    )
    pytester.runpytest_subprocess().assert_outcomes(passed=1)
    cache = pytester.path / ".pytest_cache" / "d" / ".xprocess" / ".cache"
    assert len(list(cache.glob("postgresql-*"))) == 1
    pytester.runpytest_subprocess("--xpostgresql-user", "alice").assert_outcomes(passed=1)
