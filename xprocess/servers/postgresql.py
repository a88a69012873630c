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
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, TypeAlias

from xprocess.errors import StartupError
from xprocess.ports import free_port
from xprocess.servers._common import (
    find_program,
    require_extra,
    worker_id,
)
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
    kwargs = {"host": data["host"], "port": data["port"], "user": data["user"], "dbname": dbname}
    if data.get("password") is not None:
        kwargs["password"] = data["password"]
    return kwargs


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
    port: int | None = None  # None: a free port
    superuser: str = SUPERUSER

    def __init__(self, control_dir: Path | str, process: Any = None) -> None:
        super().__init__(control_dir, process)
        user = server_user()
        self.popen_kwargs = {"user": user} if user else {}

    def args(self) -> list[object]:
        postgres = Path(self.postgres) if self.postgres else find_postgres()
        port = self.port or free_port()
        datadir = self.fresh_datadir()
        initdb(postgres.parent / "initdb", datadir, self.superuser)
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


def initdb(program: Path, datadir: Path, superuser: str = SUPERUSER) -> None:
    """Create a cluster in ``datadir``: trust authentication, UTF-8, the C locale, no fsync."""
    command = [
        str(program),
        "--pgdata",
        str(datadir),
        "--username",
        superuser,
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
            self._admin = self.connect()
            self._admin.autocommit = True
        return self._admin

    def create_database(self) -> str:
        """Create a database of this worker's own from the template; return its name."""
        from psycopg import sql

        name = f"{self.prefix}{worker_id()}_{next(self._numbers)}"
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
        """Drop this worker's session database, if it made one; close the admin connection."""
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
