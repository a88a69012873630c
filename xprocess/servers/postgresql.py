"""PostgreSQL for tests: one server for every xdist worker, a fresh database for each test.

In ``conftest.py``::

    from xprocess.servers import postgresql as pg

    postgresql_proc = pg.postgresql_proc(load=["schema.sql"])
    postgresql = pg.postgresql("postgresql_proc")

``postgresql_proc`` (session scope) starts the server once for the whole run, through
``xprocess.ensure``: ``initdb`` into a fresh data directory, then ``postgres`` on a free port of
127.0.0.1 with durability turned off. It builds a template database from ``load`` once per run
(kept across runs while the server and the loaders' inputs stay the same). ``postgresql``
(function scope) gives each test a psycopg connection to a database of its own, created from that
template, and drops it after the test.

PostgreSQL refuses to run as root: when the tests run as root, ``initdb`` and the server run as
the ``postgres`` user, with a data directory that user can reach.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import pwd
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, TypeAlias

import pytest

from xprocess.errors import InvalidStarterError, StartupError
from xprocess.ports import free_port
from xprocess.records import validate_name
from xprocess.servers._common import (
    find_program,
    flag_setting,
    require_extra,
    text_setting,
    worker_id,
)
from xprocess.servers.failures import server_fixture_value, worded_setup
from xprocess.starter import ProcessStarter

if TYPE_CHECKING:
    import psycopg

    from xprocess.manager import XProcess

__all__ = [
    "PostgreSQLServer",
    "PostgreSQLStarter",
    "find_postgres",
    "postgresql",
    "postgresql_proc",
]

Loader: TypeAlias = "str | os.PathLike[str] | Callable[..., object]"

# Where PostgreSQL's server programs live when they are not on PATH: Debian and Ubuntu (one
# directory per major version), Homebrew on Apple silicon and Intel, and the source build's default.
SEARCH_DIRS: tuple[str, ...] = (
    "/usr/lib/postgresql/*/bin",
    "/opt/homebrew/opt/postgresql@*/bin",
    "/usr/local/opt/postgresql@*/bin",
    "/opt/homebrew/bin",
    "/usr/local/pgsql/bin",
)
INSTALL = "apt-get install postgresql, or brew install postgresql"
EXEC_SETTING = "xpostgresql_exec"
KEEP_SETTING = "xpostgresql_keep"
HOST = "127.0.0.1"
SUPERUSER = "postgres"
# As root, the cluster and the server belong to this user (the postgresql package creates it).
SERVER_USER = "postgres"
TEMP_PREFIX = "xprocess-postgresql-"
_DBNAME = re.compile(r"[a-z_][a-z0-9_]{0,29}")


def require_psycopg() -> ModuleType:
    """The psycopg module, or an error saying to install ``xprocess[postgresql]``."""
    return require_extra("psycopg", "postgresql", "xprocess.servers.postgresql")


def find_postgres(configured: str | os.PathLike[str] | None = None) -> Path:
    """The ``postgres`` program (with ``initdb`` next to it): configured, on PATH, or installed."""
    return find_program(
        "postgres",
        configured=os.fspath(configured) if configured is not None else None,
        setting=EXEC_SETTING,
        search=SEARCH_DIRS,
        install=INSTALL,
        companions=("initdb",),
    )


def server_user() -> str | None:
    """The user to run PostgreSQL as: ``postgres`` when we are root, else None (ourselves)."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(SERVER_USER)
    except KeyError:
        raise StartupError(
            f"PostgreSQL will not run as root, and there is no {SERVER_USER!r} user to run it "
            f"as; create one (the postgresql package does: {INSTALL}), or run the tests as "
            "another user",
        ) from None
    return SERVER_USER


def _reachable(path: Path, user: str) -> bool:
    """Whether ``user`` can get to ``path`` (search permission on it and on every parent)."""
    return subprocess.run(["test", "-x", str(path)], user=user, check=False).returncode == 0


def connect_kwargs(data: dict[str, Any], dbname: str) -> dict[str, Any]:
    """psycopg connection parameters of the server whose recorded data is ``data``."""
    return {"host": data["host"], "port": data["port"], "user": data["user"], "dbname": dbname}


class PostgreSQLStarter(ProcessStarter):
    """``initdb`` into a fresh data directory, then ``postgres`` on a free port of 127.0.0.1.

    The fixture factory makes a subclass with ``postgres`` (the program), ``process_name`` and
    ``options`` (more ``-c name=value`` settings) filled in.
    """

    pattern = "database system is ready to accept connections"
    timeout = 60
    max_read_lines = 500
    terminate_at_end = True
    postgres: str = ""
    process_name: str = "postgresql"
    options: tuple[str, ...] = ()

    def __init__(self, control_dir: Path | str, process: Any = None) -> None:
        super().__init__(control_dir, process)
        user = server_user()
        self.popen_kwargs = {"user": user} if user else {}

    def args(self) -> list[object]:
        postgres = Path(self.postgres) if self.postgres else find_postgres()
        port = free_port()
        datadir = self.fresh_datadir()
        initdb(postgres.parent / "initdb", datadir)
        self.data.update(host=HOST, port=port, user=SUPERUSER, datadir=str(datadir))
        settings = [
            "listen_addresses=127.0.0.1",
            # Durability is not needed for data that is thrown away.
            "fsync=off",
            "synchronous_commit=off",
            "full_page_writes=off",
            *self.options,
        ]
        # -k "": no Unix-domain socket, whose path may not exceed 107 bytes (a directory deep in a
        # project easily does); clients connect over TCP.
        return [postgres, "-D", datadir, "-p", port, "-k", ""] + [
            part for setting in settings for part in ("-c", setting)
        ]

    def fresh_datadir(self) -> Path:
        """An empty data directory owned by the user the server runs as.

        The cluster of the previous start (its path is in the old record) is removed first:
        ``ensure`` has stopped that server before it calls ``args()``.
        """
        if self.process is not None:
            previous = self.process.getinfo(self.process_name)
            old = previous.data.get("datadir")
            if old:
                shutil.rmtree(old, ignore_errors=True)
        user = server_user()
        if user is None or _reachable(self.control_dir, user):
            datadir = self.control_dir / "data"
            shutil.rmtree(datadir, ignore_errors=True)
            datadir.mkdir()
        else:
            # The project lies where that user cannot go (under /root, or pytest's private
            # temporary directories): use a directory of its own under the system's.
            datadir = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX))
        if user is not None:
            shutil.chown(datadir, user)
        return datadir

    def startup_check(self) -> bool:
        # The ready line comes first; a real query then proves the server takes connections.
        psycopg = require_psycopg()
        with psycopg.connect(**connect_kwargs(self.data, "postgres"), connect_timeout=5) as conn:
            conn.execute("SELECT 1")
        return True


def initdb(program: Path, datadir: Path) -> None:
    """Create a cluster in ``datadir``: trust authentication, UTF-8, the C locale, no fsync."""
    command = [
        str(program),
        "--pgdata",
        str(datadir),
        "--username",
        SUPERUSER,
        "--auth",
        "trust",
        "--encoding",
        "UTF8",
        "--locale",
        "C",
        "--no-sync",
    ]
    result = subprocess.run(
        command, cwd=datadir, user=server_user(), capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise StartupError(
            f"initdb failed with exit code {result.returncode}: {' '.join(command)}\n"
            f"{result.stdout}{result.stderr}"
        )


class PostgreSQLServer:
    """The running server, as the ``postgresql_proc`` fixture gives it.

    ``host``, ``port``, ``user``, ``password`` (None: trust authentication) and ``dbname`` (the
    maintenance database) say how to connect; ``template_dbname`` is the database each test's
    database is copied from (None without ``load``).
    """

    def __init__(
        self,
        name: str,
        data: dict[str, Any],
        *,
        template_dbname: str | None,
        prefix: str,
    ) -> None:
        self.name = name
        self.host: str = data["host"]
        self.port: int = data["port"]
        self.user: str = data["user"]
        self.password: str | None = None
        self.dbname = "postgres"
        self.datadir: str = data["datadir"]
        self.template_dbname = template_dbname
        self._prefix = prefix
        self._numbers = itertools.count()
        self._admin: psycopg.Connection[Any] | None = None

    def connect_kwargs(self, dbname: str | None = None) -> dict[str, Any]:
        """Keyword arguments of ``psycopg.connect`` for ``dbname`` (default: ``postgres``)."""
        return {
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "dbname": dbname or "postgres",
        }

    def connect(self, dbname: str | None = None) -> psycopg.Connection[Any]:
        """A new psycopg connection to ``dbname`` (default: ``postgres``)."""
        module = require_psycopg()
        connection: psycopg.Connection[Any] = module.connect(**self.connect_kwargs(dbname))
        return connection

    def _admin_connection(self) -> psycopg.Connection[Any]:
        if self._admin is None or self._admin.closed:
            self._admin = self.connect()
            self._admin.autocommit = True
        return self._admin

    def create_database(self) -> str:
        """Create a database of this worker's own from the template; return its name."""
        from psycopg import sql

        name = f"{self._prefix}{worker_id()}_{next(self._numbers)}"
        admin = self._admin_connection()
        statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if self.template_dbname is not None:
            statement += sql.SQL(" TEMPLATE {}").format(sql.Identifier(self.template_dbname))
        if admin.info.server_version >= 150000:
            # For a small database, copying its files (and a checkpoint without fsync) is about
            # twice as fast as the default of PostgreSQL 15, writing each block through the WAL.
            statement += sql.SQL(" STRATEGY FILE_COPY")
        admin.execute(statement)
        return name

    def drop_database(self, name: str) -> None:
        """Drop ``name``, closing whatever connections to it the test left open."""
        from psycopg import sql

        statement = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        self._admin_connection().execute(statement)

    def close(self) -> None:
        if self._admin is not None:
            self._admin.close()
            self._admin = None

    def __repr__(self) -> str:
        return f"<PostgreSQLServer {self.name!r} {self.host}:{self.port}>"


def _loader_label(loader: Loader) -> str:
    if callable(loader):
        return f"{getattr(loader, '__module__', '')}.{getattr(loader, '__qualname__', loader)!s}"
    return os.fspath(loader)


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


def template_key(loaders: Sequence[Path | Callable[..., object]], key: str) -> str:
    """What the template is built from: each SQL file's path and content, each function's name."""
    digest = hashlib.sha256()
    for loader in loaders:
        if isinstance(loader, Path):
            digest.update(f"file {loader}\n".encode())
            digest.update(loader.read_bytes())
        else:
            digest.update(f"function {_loader_label(loader)}\n".encode())
    digest.update(f"key {key}\n".encode())
    return digest.hexdigest()


def build_template(
    data: dict[str, Any], template: str, loaders: Sequence[Path | Callable[..., object]]
) -> dict[str, Any]:
    """Create the database ``template`` and run the loaders in it; return what names it."""
    psycopg = require_psycopg()
    from psycopg import sql

    value = {**connect_kwargs(data, "postgres"), "template": template}
    identifier = sql.Identifier(template)
    with psycopg.connect(**connect_kwargs(data, "postgres"), autocommit=True) as admin:
        _drop_template(admin, template)
        admin.execute(sql.SQL("CREATE DATABASE {}").format(identifier))
        try:
            for loader in loaders:
                if isinstance(loader, Path):
                    with psycopg.connect(**connect_kwargs(data, template)) as conn:
                        conn.execute(loader.read_text(encoding="utf-8").encode())
                else:
                    loader(
                        host=data["host"],
                        port=data["port"],
                        user=data["user"],
                        dbname=template,
                        password=None,
                    )
            # A database is copied only while nobody is connected to it: close what a loader left
            # open, and let no one connect again.
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                (template,),
            )
            admin.execute(
                sql.SQL("ALTER DATABASE {} WITH IS_TEMPLATE true ALLOW_CONNECTIONS false").format(
                    identifier
                )
            )
        except BaseException:
            _drop_template(admin, template)
            raise
    return value


def _drop_template(admin: psycopg.Connection[Any], template: str) -> None:
    from psycopg import sql

    identifier = sql.Identifier(template)
    exists = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (template,)).fetchone()
    if exists:
        admin.execute(sql.SQL("ALTER DATABASE {} WITH IS_TEMPLATE false").format(identifier))
        admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(identifier))


def drop_template(value: dict[str, Any]) -> None:
    """Cleanup of the template value: drop the template database (its inputs changed)."""
    psycopg = require_psycopg()
    kwargs = {k: value[k] for k in ("host", "port", "user", "dbname")}
    with psycopg.connect(**kwargs, autocommit=True, connect_timeout=5) as admin:
        _drop_template(admin, value["template"])


def drop_run_databases(value: dict[str, Any]) -> None:
    """Cleanup at the end of a run: drop the test databases it left (a crashed worker's)."""
    psycopg = require_psycopg()
    from psycopg import sql

    kwargs = {k: value[k] for k in ("host", "port", "user", "dbname")}
    with psycopg.connect(**kwargs, autocommit=True, connect_timeout=5) as admin:
        rows = admin.execute(
            "SELECT datname FROM pg_database WHERE starts_with(datname, %s)", (value["prefix"],)
        ).fetchall()
        for (name,) in rows:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def _check_dbname(name: str, dbname: str) -> str:
    if not isinstance(dbname, str) or not _DBNAME.fullmatch(dbname):
        raise InvalidStarterError(
            f"postgresql_proc {name!r}: dbname={dbname!r} cannot prefix database names; use up to "
            "30 lower-case letters, digits and '_', not starting with a digit",
            name=name,
        )
    return dbname


def postgresql_proc(
    name: str = "postgresql",
    *,
    executable: str | os.PathLike[str] | None = None,
    keep: bool | None = None,
    load: Sequence[Loader] = (),
    key: str = "",
    dbname: str = "tests",
    options: Sequence[str] = (),
) -> Any:
    """A session fixture: the PostgreSQL server ``name``, one for every xdist worker.

    ``executable``: the ``postgres`` program or its directory (default: the ``xpostgresql_exec``
    setting, then PATH, then the usual places). ``keep``: leave the server running after the run
    for the next one (default: the ``xpostgresql_keep`` setting, else stopped at the end).
    ``load``: SQL files (relative to the rootdir) and functions, called as
    ``loader(host=, port=, user=, dbname=, password=)``, that fill the template database; it is
    built again when a file's content, a function's name or ``key`` changes. ``dbname``: the prefix
    of the databases' names. ``options``: more server settings, as ``"name=value"``.
    """
    validate_name(name)
    _check_dbname(name, dbname)
    loaders = _check_loaders(name, load)
    settings = tuple(options)
    for setting in settings:
        if not isinstance(setting, str) or "=" not in setting:
            raise InvalidStarterError(
                f"postgresql_proc {name!r}: each of options= is a server setting 'name=value', "
                f"got {setting!r}",
                name=name,
            )

    @pytest.fixture(scope="session")
    @worded_setup
    def postgresql_proc_fixture(
        request: pytest.FixtureRequest, xprocess: XProcess
    ) -> Iterator[PostgreSQLServer]:
        config = request.config
        require_psycopg()
        postgres = find_postgres(executable or text_setting(config, EXEC_SETTING))
        server_user()  # as root, fail now if there is no user to run the server as
        files = _resolve_files(name, loaders, config.rootpath)
        stays = keep if keep is not None else flag_setting(config, KEEP_SETTING)
        starter = type(
            "PostgreSQLStarter",
            (PostgreSQLStarter,),
            {
                "postgres": str(postgres),
                "process_name": name,
                "options": settings,
                "terminate_at_end": not stays,
            },
        )
        xprocess.ensure(name, starter)
        data = xprocess.getinfo(name).data
        template = None
        if files:
            digest = template_key(files, key)
            template = f"{dbname}_template_{digest[:12]}"
            xprocess.shared(
                f"{name}-template-{dbname}",
                lambda: build_template(data, template, files),
                key=digest,
                cleanup=drop_template,
                process=name,
            )
        prefix = f"{dbname}_{xprocess.run_id[:8]}_"
        # Dropped at the end of the run: what a crashed worker or an interrupted test left.
        xprocess.shared(
            f"{name}-databases-{dbname}",
            lambda: {**connect_kwargs(data, "postgres"), "prefix": prefix},
            cleanup=drop_run_databases,
            process=name,
        )
        server = PostgreSQLServer(name, data, template_dbname=template, prefix=prefix)
        yield server
        server.close()

    return postgresql_proc_fixture


def postgresql(proc_fixture_name: str = "postgresql_proc") -> Any:
    """A function fixture: a psycopg connection to a fresh database, dropped after the test.

    The database is a copy of the template of the server fixture ``proc_fixture_name``, of this
    worker's own: no other test and no other worker sees it.
    """
    if not isinstance(proc_fixture_name, str) or not proc_fixture_name:
        raise InvalidStarterError(
            f"postgresql(): pass the name of the server fixture (as a string), got "
            f"{proc_fixture_name!r}"
        )

    @pytest.fixture
    def postgresql_fixture(request: pytest.FixtureRequest) -> Iterator[psycopg.Connection[Any]]:
        __tracebackhide__ = True
        server: PostgreSQLServer = server_fixture_value(request, proc_fixture_name)
        database = server.create_database()
        try:
            with server.connect(database) as connection:
                yield connection
        finally:
            server.drop_database(database)

    return postgresql_fixture
