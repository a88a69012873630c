"""The fixture factories of ``xprocess.servers.postgresql``: ``postgresql_proc``, ``postgresql``.

``postgresql_proc`` resolves its settings, starts the server (or connects to an existing one) and
prepares the template and the run's databases; ``postgresql`` gives each test its database.
Import them from ``xprocess.servers.postgresql``.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import pytest

from xprocess.errors import InvalidStarterError
from xprocess.paths import records_root
from xprocess.records import validate_name
from xprocess.servers import _pgcache
from xprocess.servers._common import flag_setting, require_extra, text_setting
from xprocess.servers.existing import check_postgresql
from xprocess.servers.failures import server_fixture_value, worded_setup
from xprocess.servers.isolation import (
    KEPT_PROPERTY,
    check_isolation,
    failed,
    isolation_of,
    keep,
)
from xprocess.servers.postgresql import (
    _DBNAME,
    EXEC_SETTING,
    EXISTING_PORT,
    KEEP_SETTING,
    SUPERUSER,
    Loader,
    PostgreSQLServer,
    PostgreSQLStarter,
    build_template,
    connect_kwargs,
    drop_run_databases,
    drop_template,
    find_postgres,
    pristine_cluster,
    require_psycopg,
    server_user,
    template_key,
)
from xprocess.servers.settings import POSTGRESQL as SETTINGS
from xprocess.servers.settings import choose, resolve
from xprocess.servers.warm_up import ahead, needs

if TYPE_CHECKING:
    import psycopg

    from xprocess.manager import XProcess

__all__ = [
    "DatabaseOfTest",
    "database_for_test",
    "postgresql",
    "postgresql_async",
    "postgresql_proc",
]


def _check_loaders(name: str, load: Sequence[Loader]) -> list[Loader]:
    if isinstance(load, (str, os.PathLike)):
        load = [load]
    loaders = list(load)
    for loader in loaders:
        if not (callable(loader) or isinstance(loader, (str, os.PathLike))):
            raise InvalidStarterError(
                f"postgresql_proc {name!r}: each item of load= must be the path of an SQL file or "
                f"a function called as loader(host=, port=, user=, dbname=, password=); got "
                f"{loader!r}",
                name=name,
            )
    return loaders


def _resolve_files(
    name: str, loaders: list[Loader], rootdir: Path
) -> list[Path | Callable[..., object]]:
    resolved: list[Path | Callable[..., object]] = []
    for loader in loaders:
        if callable(loader):
            resolved.append(loader)
            continue
        path = Path(loader).expanduser()
        path = path if path.is_absolute() else rootdir / path
        if not path.is_file():
            raise InvalidStarterError(
                f"postgresql_proc {name!r}: the SQL file {path} given in load= does not exist "
                f"(relative paths are taken from the rootdir, {rootdir})",
                name=name,
            )
        resolved.append(path)
    return resolved


def _check_dbname(name: str, dbname: str) -> str:
    if not isinstance(dbname, str) or not _DBNAME.fullmatch(dbname):
        raise InvalidStarterError(
            f"postgresql_proc {name!r}: dbname={dbname!r} cannot prefix database names; use up to "
            "30 lower-case letters, digits and '_', not starting with a digit",
            name=name,
        )
    return dbname


def _check_options(name: str, options: Sequence[str]) -> tuple[str, ...]:
    settings = tuple(options)
    for setting in settings:
        if not isinstance(setting, str) or "=" not in setting:
            raise InvalidStarterError(
                f"postgresql_proc {name!r}: each of options= is a server setting 'name=value', "
                f"got {setting!r}",
                name=name,
            )
    return settings


def postgresql_proc(
    name: str = "postgresql",
    *,
    executable: str | os.PathLike[str] | None = None,
    keep: bool | None = None,
    load: Sequence[Loader] | None = None,
    key: str = "",
    dbname: str | None = None,
    options: Sequence[str] | None = None,
    host: str | None = None,
    port: int | None = None,
    user: str | None = None,
    password: str | None = None,
) -> Any:
    """A session fixture: the PostgreSQL server ``name``, one for every xdist worker.

    Each argument left out is taken from its setting (``--xpostgresql-<argument>`` on the
    command line, the environment where the setting has a variable, ``xpostgresql_<argument>``
    in the ini file), else its default.

    ``executable``: the ``postgres`` program or its directory (default: PATH, then the usual
    places). ``keep``: leave the server running after the run for the next one. ``load``: SQL
    files (relative to the rootdir) and functions, called as ``loader(host=, port=, user=,
    dbname=, password=)``, that fill the template database; it is built again when a file's
    content, a function's name or ``key`` changes. ``dbname``: the prefix of the databases'
    names (default ``tests``). ``options``: more server settings, as ``"name=value"``. ``port``:
    the port to listen on (default: a free one). ``user``: the superuser (default ``postgres``).
    ``host``: use the server already running there instead of starting one (with ``port``,
    default 5432, ``user`` and ``password``).
    """
    validate_name(name)
    if dbname is not None:
        _check_dbname(name, dbname)
    if load is not None:
        _check_loaders(name, load)
    if options is not None:
        _check_options(name, options)

    @pytest.fixture(scope="session")
    @needs("psycopg")
    @worded_setup
    def postgresql_proc_fixture(
        request: pytest.FixtureRequest, xprocess: XProcess
    ) -> Iterator[PostgreSQLServer]:
        config = request.config
        require_psycopg()
        prefix_name = _check_dbname(name, choose(dbname, config, SETTINGS["dbname"], "tests"))
        loaders = _check_loaders(name, choose(load, config, SETTINGS["load"], ()))
        files = _resolve_files(name, loaders, config.rootpath)
        address = {
            "host": choose(host, config, SETTINGS["host"], None),
            "port": choose(port, config, SETTINGS["port"], None),
            "user": choose(user, config, SETTINGS["user"], SUPERUSER),
            "password": choose(password, config, SETTINGS["password"], None),
        }
        if address["host"] is not None:
            data = {**address, "port": address["port"] or EXISTING_PORT}
            check_postgresql(name, data)
            server = _databases(xprocess, name, data, files, key, prefix_name, started=False)
        else:
            postgres = find_postgres(executable or text_setting(config, EXEC_SETTING))
            server_user()  # as root, fail now if there is no user to run the server as
            stays = keep if keep is not None else flag_setting(config, KEEP_SETTING)
            # A failed test's database is kept to be looked at: so is the server holding it.
            stays = stays or bool(resolve(config, SETTINGS["keep_failed"]))
            starter = type(
                "PostgreSQLStarter",
                (PostgreSQLStarter,),
                {
                    "postgres": str(postgres),
                    "process_name": name,
                    "options": _check_options(
                        name, choose(options, config, SETTINGS["options"], ())
                    ),
                    "terminate_at_end": not stays,
                    "port": address["port"],
                    "superuser": address["user"],
                },
            )
            xprocess.ensure(name, starter)
            # The password is not recorded on disk; the started server trusts 127.0.0.1.
            data = {**xprocess.getinfo(name).data, "password": address["password"]}
            server = _databases(xprocess, name, data, files, key, prefix_name, started=True)
        if resolve(config, SETTINGS["isolation"]) != "transaction":
            # Tests' databases are made ahead of need; under transaction isolation the worker's
            # one database does (a test marked for its own database starts the pool then).
            server.start_pool()
        yield server
        server.close()
        # A first start copies its new cluster into the cache while the tests run: the run
        # ends with that copy made.
        _pgcache.finish_fills()

    def initdb_ahead(config: pytest.Config) -> None:
        """At the start of the session: begin initdb if this server will need a new cluster
        (see ``_pgcache.make_ahead``). What is wrong is left for the fixture to report."""
        if choose(host, config, SETTINGS["host"], None) is not None:
            return
        try:
            postgres = find_postgres(executable or text_setting(config, EXEC_SETTING))
            superuser = choose(user, config, SETTINGS["user"], SUPERUSER)
            control_dir = records_root(config) / name
            pristine = pristine_cluster(postgres, superuser, control_dir)
        except Exception:
            return
        _pgcache.make_ahead(pristine.cache, pristine.key, pristine.make, pristine.scratch)

    return ahead(postgresql_proc_fixture, initdb_ahead)


def _databases(
    xprocess: XProcess,
    name: str,
    data: dict[str, Any],
    files: list[Path | Callable[..., object]],
    key: str,
    dbname: str,
    *,
    started: bool,
) -> PostgreSQLServer:
    """The template (built once for all workers) and the run's test databases, in the server.

    In a server xprocess started, the template is kept across runs while the server lives; in an
    existing one it is the run's own (another run may use that server at once, or the server may
    have been reset since), dropped at the end with the test databases.
    """
    run = xprocess.run_id[:8]
    tied = name if started else None
    template = None
    if files:
        digest = template_key(files, key)
        template = (
            f"{dbname}_template_{digest[:12]}"
            if started
            else f"{dbname}_template_{run}_{digest[:8]}"
        )
        xprocess.shared(
            f"{name}-template-{dbname}",
            lambda: build_template(data, template, files),
            key=digest if started else None,
            cleanup=drop_template,
            process=tied,
        )
    prefix = f"{dbname}_{run}_"
    # Dropped at the end of the run: what a crashed worker or an interrupted test left.
    xprocess.shared(
        f"{name}-databases-{dbname}",
        lambda: {**connect_kwargs(data, "postgres"), "prefix": prefix},
        cleanup=drop_run_databases,
        process=tied,
    )
    return PostgreSQLServer(name, data, template_dbname=template, prefix=prefix)


def postgresql(proc_fixture_name: str = "postgresql_proc", *, isolation: str | None = None) -> Any:
    """A function fixture: a psycopg connection to a database of this test's own.

    The database is a copy of the template of the server fixture ``proc_fixture_name``, of this
    worker's own: no other test and no other worker sees it. ``isolation``: ``"database"`` (a
    fresh database per test, made ahead of need with its connection already open, dropped in the
    background after it) or ``"transaction"`` (one database per worker, each test in a
    transaction rolled back after it); default: the ``xpostgresql_isolation`` setting, else
    ``"database"``; a test's ``@pytest.mark.xpostgresql_isolation(...)`` wins.
    With ``--xpostgresql-keep-failed``, a failed test's database is kept (see the summary).
    """
    if not isinstance(proc_fixture_name, str) or not proc_fixture_name:
        raise InvalidStarterError(
            f"postgresql(): pass the name of the server fixture (as a string), got "
            f"{proc_fixture_name!r}"
        )
    if isolation is not None:
        check_isolation(isolation, "postgresql()")

    @pytest.fixture
    @needs("psycopg")
    def postgresql_fixture(request: pytest.FixtureRequest) -> Iterator[psycopg.Connection[Any]]:
        __tracebackhide__ = True
        server: PostgreSQLServer = server_fixture_value(request, proc_fixture_name)
        with database_for_test(request, server, isolation) as test_database:
            connection = test_database.connection
            if connection is None:
                connection = server.connect(test_database.name)
            with connection:
                if not test_database.rolled_back:
                    yield connection
                    return
                with connection.transaction(force_rollback=True):
                    yield connection

    return postgresql_fixture


class DatabaseOfTest(NamedTuple):
    """The database a test gets (see :func:`database_for_test`)."""

    name: str
    # Whether the test runs in a transaction rolled back at its end (``transaction`` isolation).
    rolled_back: bool
    # A connection to it already open (made ahead with a fresh database), or None.
    connection: psycopg.Connection[Any] | None


@contextmanager
def database_for_test(
    request: pytest.FixtureRequest, server: PostgreSQLServer, isolation: str | None
) -> Iterator[DatabaseOfTest]:
    """The database of the test ``request`` is for, whether to roll the test back in it, and
    a connection to it when one is open already.

    A fresh database, made ahead of need with its connection (``take_connection``), is dropped
    in the background after the test (or kept, renamed, with ``keep_failed`` when the test
    failed); under ``transaction`` isolation it is the worker's session database. The
    connections to it must be closed when this exits (the one it gave is closed here too).
    """
    config = request.config
    if isolation_of(request.node, isolation, resolve(config, SETTINGS["isolation"])) == (
        "transaction"
    ):
        yield DatabaseOfTest(server.worker_database(), True, None)
        return
    connection = server.take_connection()
    database = connection.info.dbname
    kept = False
    try:
        yield DatabaseOfTest(database, False, connection)
        connection.close()
        if resolve(config, SETTINGS["keep_failed"]) and failed(request.node):
            request.node.user_properties.append((KEPT_PROPERTY, keep(server, database)))
            kept = True
    finally:
        connection.close()
        if not kept:
            server.give_back(database)


def postgresql_async(
    proc_fixture_name: str = "postgresql_proc", *, isolation: str | None = None
) -> Any:
    """Like :func:`postgresql`, for ``async def`` tests: a ``psycopg.AsyncConnection``.

    Needs pytest-asyncio (``pip install pytest-asyncio``); the fixture is a pytest-asyncio
    fixture, so it works in its strict mode too::

        postgresql_async = pg.postgresql_async("postgresql_proc")

        @pytest.mark.asyncio
        async def test_it(postgresql_async):
            await postgresql_async.execute("SELECT 1")
    """
    pytest_asyncio = require_extra("pytest_asyncio", "asyncio", "postgresql_async()")
    async_fixture: Callable[[Callable[..., Any]], Any] = pytest_asyncio.fixture
    if isolation is not None:
        check_isolation(isolation, "postgresql_async()")

    @async_fixture
    @needs("psycopg")
    async def postgresql_async_fixture(
        request: pytest.FixtureRequest,
    ) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        __tracebackhide__ = True
        psycopg_module = require_psycopg()
        server: PostgreSQLServer = server_fixture_value(request, proc_fixture_name)
        with database_for_test(request, server, isolation) as test_database:
            if test_database.connection is not None:
                test_database.connection.close()  # made ahead, but not an asynchronous one
            connection = await psycopg_module.AsyncConnection.connect(
                **server.connect_kwargs(test_database.name)
            )
            async with connection:
                if not test_database.rolled_back:
                    yield connection
                    return
                async with connection.transaction(force_rollback=True):
                    yield connection

    return postgresql_async_fixture
