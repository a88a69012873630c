"""Tests that each get a database of their own, copied from the template built from schema.sql."""

from __future__ import annotations

from typing import Any

import psycopg

from xprocess import XProcess
from xprocess.servers.postgresql import PostgreSQLServer

Connection = psycopg.Connection[tuple[Any, ...]]


def test_the_schema_is_loaded(postgresql: Connection) -> None:
    row = postgresql.execute("SELECT sum(count) FROM fruit WHERE name <> %s", ("pear",)).fetchone()
    assert row == (10,)


def test_changes_stay_in_this_tests_database(postgresql: Connection) -> None:
    postgresql.execute("DELETE FROM fruit")
    postgresql.execute("CREATE TABLE note (body text)")
    postgresql.commit()
    assert postgresql.execute("SELECT count(*) FROM fruit").fetchone() == (0,)


def test_each_test_starts_from_the_template(postgresql: Connection) -> None:
    assert postgresql.execute("SELECT count(*) FROM fruit").fetchone() == (3,)
    exists = postgresql.execute("SELECT to_regclass('note') IS NOT NULL").fetchone()
    assert exists == (False,)


def test_the_server_is_the_recorded_one(
    postgresql: Connection, postgresql_proc: PostgreSQLServer, xprocess: XProcess
) -> None:
    recorded = xprocess.getinfo("postgresql")
    row = postgresql.execute(
        "SELECT inet_server_port(), current_setting('data_directory')"
    ).fetchone()
    assert row == (recorded.data["port"], recorded.data["datadir"])
    assert postgresql_proc.port == recorded.data["port"]
