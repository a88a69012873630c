"""PostgreSQL for tests: one server for every xdist worker, a fresh database for each test.

In ``conftest.py``::

    from xprocess.servers import postgresql as pg

    postgresql_proc = pg.postgresql_proc(load=["schema.sql"])
    postgresql = pg.postgresql("postgresql_proc")

``postgresql_proc`` (session scope) starts the server once for the whole run, through
``xprocess.ensure``: a fresh cluster (a copy of the pristine one ``initdb`` made once, see
``_pgcache`` and ``_pgdata``) on a tmpfs where there is room, then ``postgres`` on a free port
of 127.0.0.1 with durability turned off. It builds a template database from ``load`` once per
run (kept across runs while the server and the loaders' inputs stay the same). ``postgresql``
(function scope) gives each test a psycopg connection to a database of its own, created from
that template ahead of need (``_pgpool``), and drops it in the background after the test.

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
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, NamedTuple, TypeAlias

from xprocess.errors import StartupError
from xprocess.layout import Layout
from xprocess.ports import free_port
from xprocess.servers import _pgcache, _pgdata
from xprocess.servers._common import (
    find_program,
    require_extra,
    worker_id,
)
from xprocess.servers._pgpool import DatabasePool
from xprocess.starter import ProcessStarter

if TYPE_CHECKING:
    import psycopg


__all__ = [
    "PostgreSQLServer",
    "PostgreSQLStarter",
    "find_postgres",
    "postgresql",
    "postgresql_async",
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
EXISTING_PORT = 5432  # an existing server's port when only its host is given
SUPERUSER = "postgres"
# As root, the cluster and the server belong to this user (the postgresql package creates it).
SERVER_USER = "postgres"
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


def connect_kwargs(data: dict[str, Any], dbname: str) -> dict[str, Any]:
    """psycopg connection parameters of the server whose recorded data is ``data``."""
    kwargs = {"host": data["host"], "port": data["port"], "user": data["user"], "dbname": dbname}
    if data.get("password") is not None:
        kwargs["password"] = data["password"]
    return kwargs


class PostgreSQLStarter(ProcessStarter):
    """A fresh cluster of ``superuser`` (a copy of the pristine one ``initdb`` made, see
    ``_pgdata``), then ``postgres`` on ``port`` (default: a free one) of 127.0.0.1.

    The fixture factory makes a subclass with ``postgres`` (the program), ``process_name``,
    ``options`` (more ``-c name=value`` settings), ``port`` and ``superuser`` filled in.
    """

    pattern = "database system is ready to accept connections"
    timeout = 60
    max_read_lines = 500
    terminate_at_end = True
    postgres: str = ""
    process_name: str = "postgresql"
    options: tuple[str, ...] = ()
    port: int | None = None  # None: a free port
    superuser: str = SUPERUSER

    def __init__(self, control_dir: Path | str, process: Any = None) -> None:
        super().__init__(control_dir, process)
        user = server_user()
        self.popen_kwargs = {"user": user} if user else {}

    def args(self) -> list[object]:
        postgres = Path(self.postgres) if self.postgres else find_postgres()
        port = self.port or free_port()
        user = server_user()
        if self.process is not None:
            previous = self.process.getinfo(self.process_name).data.get("datadir")
            _pgdata.remove_old_datadir(previous, self.control_dir)
        _pgdata.sweep()
        scratch = _pgdata.make_scratch(self.control_dir, user)
        datadir = scratch / "data"
        pristine = pristine_cluster(postgres, self.superuser, Path(self.control_dir))
        _pgcache.cached_cluster(
            pristine.cache, pristine.key, datadir, pristine.make, pristine.scratch
        )
        self.data.update(host=HOST, port=port, user=self.superuser, datadir=str(datadir))
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
        command: list[object] = [postgres, "-D", datadir, "-p", port, "-k", ""]
        command += [part for setting in settings for part in ("-c", setting)]
        return _pgdata.server_command(scratch, command)

    def startup_check(self) -> bool:
        # The ready line comes first; a real query then proves the server takes connections.
        psycopg = require_psycopg()
        with psycopg.connect(**connect_kwargs(self.data, "postgres"), connect_timeout=5) as conn:
            conn.execute("SELECT 1")
        return True


class PristineCluster(NamedTuple):
    """Where a server's pristine cluster comes from (see ``_pgcache``): the cache directory, the
    cluster's key there, how initdb makes it, and where (a new scratch directory)."""

    cache: Path
    key: str
    make: Callable[[Path], None]
    scratch: Callable[[], Path]


def pristine_cluster(postgres: Path, superuser: str, control_dir: Path) -> PristineCluster:
    """The pristine cluster of ``superuser`` for the server whose control dir is ``control_dir``."""
    user = server_user()
    # The superuser is one of initdb's arguments: a cluster cached for another is not this one.
    key = _pgcache.cache_key(postgres, initdb_args(superuser), user)

    def make(target: Path) -> None:
        target.mkdir()
        if user is not None:
            shutil.chown(target, user)
        initdb(postgres.parent / "initdb", target, superuser)

    return PristineCluster(
        Layout(control_dir.parent).cache,
        key,
        make,
        lambda: _pgdata.make_scratch(control_dir, user),
    )


def initdb_args(superuser: str = SUPERUSER) -> list[str]:
    """initdb's arguments for a cluster of ``superuser``: trust authentication, UTF-8, the C
    locale."""
    return ["--username", superuser, "--auth", "trust", "--encoding", "UTF8", "--locale", "C"]


# The cluster of the default superuser.
INITDB_ARGS = initdb_args()


def initdb(program: Path, datadir: Path, superuser: str = SUPERUSER) -> None:
    """Create a cluster of ``superuser`` in ``datadir`` (``initdb_args``), not synced to disk."""
    command = [str(program), "--pgdata", str(datadir), *initdb_args(superuser), "--no-sync"]
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
        self.password: str | None = data.get("password")
        self.dbname = "postgres"
        # None for an existing server (xpostgresql_host): its files are not ours.
        self.datadir: str | None = data.get("datadir")
        self._data = data
        self.template_dbname = template_dbname
        self.prefix = prefix  # of the names of the run's test databases
        self._numbers = itertools.count()
        self._admin: psycopg.Connection[Any] | None = None
        self._worker_database: str | None = None
        self._pool: DatabasePool | None = None

    def connect_kwargs(self, dbname: str | None = None) -> dict[str, Any]:
        """Keyword arguments of ``psycopg.connect`` for ``dbname`` (default: ``postgres``)."""
        return connect_kwargs(self._data, dbname or "postgres")

    def connect(self, dbname: str | None = None) -> psycopg.Connection[Any]:
        """A new psycopg connection to ``dbname`` (default: ``postgres``)."""
        module = require_psycopg()
        connection: psycopg.Connection[Any] = module.connect(**self.connect_kwargs(dbname))
        return connection

    def _admin_connection(self) -> psycopg.Connection[Any]:
        if self._admin is None or self._admin.closed:
            self._admin = self._autocommit_connection()
        return self._admin

    def _autocommit_connection(self) -> psycopg.Connection[Any]:
        connection = self.connect()
        connection.autocommit = True
        return connection

    def create_database(self) -> str:
        """Create a database of this worker's own from the template; return its name."""
        return self._create(self._admin_connection())

    def drop_database(self, name: str) -> None:
        """Drop ``name``, closing whatever connections to it the test left open."""
        self._drop(self._admin_connection(), name)

    def take_connection(self) -> psycopg.Connection[Any]:
        """A connection to a database of this worker's own, made ahead of need.

        ``give_back`` its database's name (``connection.info.dbname``) when done.
        """
        self.start_pool()
        assert self._pool is not None
        _, connection = self._pool.take()
        return connection  # type: ignore[no-any-return]

    def give_back(self, name: str) -> None:
        """Drop the database ``name`` of ``take_connection`` in the background."""
        if self._pool is None:
            self.drop_database(name)
        else:
            self._pool.give_back(name)

    def start_pool(self) -> None:
        """Begin making databases ahead of need (``take_connection`` does, if not begun here)."""
        if self._pool is None:
            self._pool = DatabasePool(
                self._autocommit_connection, self._create, self._drop, self.connect
            )

    def _create(self, admin: psycopg.Connection[Any]) -> str:
        from psycopg import sql

        name = f"{self.prefix}{worker_id()}_{next(self._numbers)}"
        statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if self.template_dbname is not None:
            statement += sql.SQL(" TEMPLATE {}").format(sql.Identifier(self.template_dbname))
        if admin.info.server_version >= 150000:
            # Measured on a tmpfs: copying a small template's files (with a checkpoint, cheap
            # without fsync) makes 40 tests about 1.2x faster than PostgreSQL 15's default,
            # WAL_LOG, which writes each of its blocks through the WAL.
            statement += sql.SQL(" STRATEGY FILE_COPY")
        admin.execute(statement)
        return name

    @staticmethod
    def _drop(admin: psycopg.Connection[Any], name: str) -> None:
        from psycopg import sql

        statement = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        admin.execute(statement)

    def worker_database(self) -> str:
        """A database of this worker's own for the session (the ``transaction`` isolation):
        created from the template at first use, dropped by :meth:`close`."""
        if self._worker_database is None:
            self._worker_database = self.create_database()
        return self._worker_database

    def rename_database(self, name: str, new_name: str) -> None:
        """Rename ``name`` to ``new_name``, closing whatever connections to it are left."""
        from psycopg import sql

        admin = self._admin_connection()
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,)
        )
        admin.execute(
            sql.SQL("ALTER DATABASE {} RENAME TO {}").format(
                sql.Identifier(name), sql.Identifier(new_name)
            )
        )

    def close(self) -> None:
        """Drop the databases made ahead and given back, and this worker's session database, if
        it made one; close the connections."""
        if self._pool is not None:
            self._pool.close()
            self._pool = None
        if self._worker_database is not None:
            self.drop_database(self._worker_database)
            self._worker_database = None
        if self._admin is not None:
            self._admin.close()
            self._admin = None

    def __repr__(self) -> str:
        return f"<PostgreSQLServer {self.name!r} {self.host}:{self.port}>"


def _loader_label(loader: Loader) -> str:
    if callable(loader):
        return f"{getattr(loader, '__module__', '')}.{getattr(loader, '__qualname__', loader)!s}"
    return os.fspath(loader)


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
        create = sql.SQL("CREATE DATABASE {}").format(identifier)
        if admin.info.server_version >= 150000:
            create += sql.SQL(" STRATEGY FILE_COPY")  # as for the tests' databases
        admin.execute(create)
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
                        password=data.get("password"),
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


def _admin_kwargs(value: dict[str, Any]) -> dict[str, Any]:
    """The connection parameters a cleanup's value holds (the password only if one is set)."""
    return {k: value[k] for k in ("host", "port", "user", "dbname", "password") if k in value}


def drop_template(value: dict[str, Any]) -> None:
    """Cleanup of the template value: drop the template database (its inputs changed)."""
    psycopg = require_psycopg()
    with psycopg.connect(**_admin_kwargs(value), autocommit=True, connect_timeout=5) as admin:
        _drop_template(admin, value["template"])


def drop_run_databases(value: dict[str, Any]) -> None:
    """Cleanup at the end of a run: drop the test databases it left (a crashed worker's)."""
    psycopg = require_psycopg()
    from psycopg import sql

    with psycopg.connect(**_admin_kwargs(value), autocommit=True, connect_timeout=5) as admin:
        rows = admin.execute(
            "SELECT datname FROM pg_database WHERE starts_with(datname, %s)", (value["prefix"],)
        ).fetchall()
        for (name,) in rows:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


# The fixture factories live in their own module; they are this module's public face.
from xprocess.servers.postgresql_fixtures import (  # noqa: E402
    postgresql,
    postgresql_async,
    postgresql_proc,
)
