"""What each test's database is, and what becomes of it after a failure.

Isolation (:func:`isolation_of`): ``database``, the default, gives each test a fresh copy of the
template, dropped after it; ``transaction`` gives the tests of a worker one database and wraps
each test in a transaction rolled back at its end (much faster, for tests that do not commit:
a ``commit()`` inside raises ``psycopg.ProgrammingError``).

Keeping (``--xpostgresql-keep-failed``): the database of a test that failed is renamed out of the
run's names (so the end of the run does not drop it) and kept with its server; the run's summary
says how to connect to it (:func:`psql_command`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from xprocess.errors import InvalidStarterError

if TYPE_CHECKING:
    from xprocess.servers.postgresql import PostgreSQLServer

__all__ = [
    "ISOLATIONS",
    "KEPT_PROPERTY",
    "MARKER",
    "check_isolation",
    "failed",
    "isolation_of",
    "kept_name",
    "psql_command",
]

ISOLATIONS = ("database", "transaction")
MARKER = "xpostgresql_isolation"
# The user property a test's teardown report carries to the controller (also from xdist workers).
KEPT_PROPERTY = "xprocess kept database"
FAILED = pytest.StashKey[bool]()


def check_isolation(value: object, where: str) -> str:
    """``value`` if it names an isolation; InvalidStarterError naming ``where`` if not."""
    if value not in ISOLATIONS:
        raise InvalidStarterError(
            f"{where}: isolation {value!r} is not one of {', '.join(ISOLATIONS)}; "
            "'database' gives each test a database, 'transaction' rolls each test back"
        )
    return str(value)


def isolation_of(item: pytest.Item, chosen: str | None, setting: str | None) -> str:
    """The isolation of ``item``: its marker, else the fixture's ``chosen``, else the setting."""
    marker = item.get_closest_marker(MARKER)
    if marker is not None:
        if len(marker.args) != 1:
            raise InvalidStarterError(
                f"@pytest.mark.{MARKER} takes one argument, {' or '.join(map(repr, ISOLATIONS))}"
            )
        return check_isolation(marker.args[0], f"@pytest.mark.{MARKER} on {item.nodeid}")
    if chosen is not None:
        return chosen
    if setting is not None:
        return check_isolation(setting, "xpostgresql_isolation")
    return "database"


def failed(item: pytest.Item) -> bool:
    """Whether a phase of ``item`` has failed so far (set by the servers' plugin)."""
    return item.stash.get(FAILED, False)


def kept_name(server: PostgreSQLServer, database: str) -> str:
    """The name a failed test's database is kept under: outside the run's prefix, which the end
    of the run drops, and still telling whose it was."""
    dbname, _, run = server.prefix.removesuffix("_").rpartition("_")
    return f"{dbname}_kept_{run}_{database.removeprefix(server.prefix)}"[:63]


def psql_command(server: PostgreSQLServer, database: str) -> str:
    """The command line that opens ``database`` in psql."""
    command = f'psql "host={server.host} port={server.port} user={server.user} dbname={database}"'
    if server.password is not None:
        command += "  (password: the xpostgresql_password setting)"
    return command


def keep(server: PostgreSQLServer, database: str) -> str:
    """Rename ``database`` to its kept name; return how to connect to it."""
    kept = kept_name(server, database)
    server.rename_database(database, kept)
    return psql_command(server, kept)


def kept_lines(properties: list[tuple[str, Any]], nodeid: str) -> list[str]:
    """The summary lines of a report's kept databases."""
    return [f"{nodeid}: {value}" for name, value in properties if name == KEPT_PROPERTY]
