"""Start one PostgreSQL server for the whole test run, shared by every xdist worker.

Each start creates a fresh cluster with ``initdb`` and runs ``postgres`` on a free port, bound to
127.0.0.1. The server is stopped when the run ends (``terminate_at_end``), background workers
included: xprocess terminates the whole process tree.

PostgreSQL refuses to run as root. When the tests run as root, ``initdb`` and the server run as
the ``postgres`` user (``popen_kwargs={"user": "postgres"}``); the data directory is created for
that user, in the control dir if that user can reach it, else in a private temporary directory.
"""

from __future__ import annotations

import glob
import os
import pwd
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from xprocess import ProcessStarter, XProcess, free_port

NAME = "postgresql"
# Debian and Ubuntu install the server programs outside PATH, one directory per major version.
SEARCH_DIRS = "/usr/lib/postgresql/*/bin"
INSTALL = "apt-get install postgresql"
# PostgreSQL will not run as root: as root, the cluster and the server belong to this user.
SERVER_USER = "postgres"
TEMP_PREFIX = "xprocess-postgresql-"


def in_ci() -> bool:
    """True when the CI environment variable is set (as CI services do): a missing server fails."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def find_bindir() -> Path | None:
    """The directory holding ``postgres`` and ``initdb``: on PATH, else the newest Debian one."""
    on_path = shutil.which("postgres")
    if on_path is not None and (Path(on_path).parent / "initdb").is_file():
        return Path(on_path).parent
    versions = sorted(glob.glob(SEARCH_DIRS), key=lambda d: [int(n) for n in re.findall(r"\d+", d)])
    for candidate in reversed(versions):
        if (Path(candidate) / "postgres").is_file() and (Path(candidate) / "initdb").is_file():
            return Path(candidate)
    return None


def server_user() -> str | None:
    """The user to run PostgreSQL as: ``postgres`` when we are root, else None (ourselves)."""
    return SERVER_USER if os.geteuid() == 0 else None


def require_server() -> Path:
    """The server's bin directory; skip the tests when it is missing, or fail on CI."""
    bindir = find_bindir()
    problem = None
    if bindir is None:
        problem = f"PostgreSQL is not installed (no postgres/initdb); install it: {INSTALL}"
    elif server_user() is not None:
        try:
            pwd.getpwnam(SERVER_USER)
        except KeyError:
            problem = (
                f"running as root needs a {SERVER_USER!r} user to run PostgreSQL as "
                f"(the postgresql package creates it): {INSTALL}"
            )
    if problem is not None:
        if in_ci():
            pytest.fail(f"{problem} [CI is set, so this is a failure, not a skip]", pytrace=False)
        pytest.skip(problem)
    assert bindir is not None
    return bindir


def connect_kwargs(data: dict[str, Any]) -> dict[str, Any]:
    """Connection parameters of the server whose recorded data is ``data``."""
    return {"host": "127.0.0.1", "port": data["port"], "user": "postgres", "dbname": "postgres"}


class PostgreSQL(ProcessStarter):
    pattern = "database system is ready to accept connections"
    timeout = 60
    max_read_lines = 200
    # Stopped when the run ends, after the last xdist worker: each run gets a fresh, empty cluster,
    # and no postgres processes outlive the tests.
    terminate_at_end = True

    def __init__(self, control_dir: Path | str, process: Any = None) -> None:
        super().__init__(control_dir, process)
        user = server_user()
        self.popen_kwargs = {"user": user} if user else {}

    def args(self) -> list[object]:
        bindir = require_server()
        port = free_port()
        datadir = self.fresh_datadir()
        self.initdb(bindir, datadir)
        self.data.update(port=port, datadir=str(datadir))
        return [
            bindir / "postgres",
            "-D",
            datadir,
            "-p",
            port,
            # No Unix-domain socket: its path may not exceed 107 bytes, which a directory deep in
            # a project easily does; the tests connect over TCP.
            "-k",
            "",
            "-c",
            "listen_addresses=127.0.0.1",
            # Test settings: durability is not needed for data that is thrown away.
            "-c",
            "fsync=off",
            "-c",
            "synchronous_commit=off",
            "-c",
            "full_page_writes=off",
        ]

    def fresh_datadir(self) -> Path:
        """An empty data directory, owned by the user the server runs as.

        The cluster of the previous start (its path is in the old record) is removed first.
        """
        if self.process is not None:
            previous = self.process.getinfo(NAME)
            if previous.isrunning():  # a restart: the old server must go before its data does
                previous.terminate()
            old = previous.data.get("datadir")
            if old:
                shutil.rmtree(old, ignore_errors=True)
        user = server_user()
        if user is None or reachable(self.control_dir, user):
            datadir = self.control_dir / "data"
            shutil.rmtree(datadir, ignore_errors=True)
            datadir.mkdir()
        else:
            # The project lies where that user cannot go (under /root, or pytest's private
            # temporary directories, say): use a directory of its own under the system's.
            datadir = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX))
        if user is not None:
            shutil.chown(datadir, user)
        return datadir

    def initdb(self, bindir: Path, datadir: Path) -> None:
        command = [
            str(bindir / "initdb"),
            "--pgdata",
            str(datadir),
            "--username",
            "postgres",
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
            raise RuntimeError(
                f"initdb failed with code {result.returncode}: {' '.join(command)}\n"
                f"{result.stdout}{result.stderr}"
            )

    def startup_check(self) -> bool:
        # The ready line comes first; then a real connection proves the server takes queries.
        with psycopg.connect(**connect_kwargs(self.data), connect_timeout=5) as conn:
            conn.execute("SELECT 1")
        return True


def reachable(path: Path, user: str) -> bool:
    """Whether ``user`` can get to ``path`` (search permission on it and on every parent)."""
    return subprocess.run(["test", "-x", str(path)], user=user, check=False).returncode == 0


@pytest.fixture(scope="session")
def postgresql(xprocess: XProcess) -> dict[str, Any]:
    """Connection parameters of the shared server (for ``psycopg.connect(**postgresql)``)."""
    require_server()
    xprocess.ensure(NAME, PostgreSQL)
    return connect_kwargs(xprocess.getinfo(NAME).data)


@pytest.fixture
def conn(postgresql: dict[str, Any]) -> Iterator[psycopg.Connection[tuple[Any, ...]]]:
    """A connection to the shared server, closed after the test."""
    with psycopg.connect(**postgresql) as connection:
        yield connection
