"""Tests that use the shared PostgreSQL server through psycopg.

Workers share one server: tests keep their data in temporary tables (private to a connection)
or in transactions that they roll back, so they do not see each other's.
"""

from __future__ import annotations

from typing import Any

import psycopg

from xprocess import XProcess


def test_server_answers(conn: psycopg.Connection[tuple[Any, ...]]) -> None:
    row = conn.execute("SELECT version()").fetchone()
    assert row is not None
    assert row[0].startswith("PostgreSQL ")


def test_insert_and_query(conn: psycopg.Connection[tuple[Any, ...]]) -> None:
    conn.execute("CREATE TEMPORARY TABLE fruit (name text PRIMARY KEY, count int NOT NULL)")
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO fruit (name, count) VALUES (%s, %s)",
            [("apple", 3), ("pear", 5), ("plum", 7)],
        )
    row = conn.execute("SELECT sum(count) FROM fruit WHERE name <> %s", ("pear",)).fetchone()
    assert row == (10,)


def test_rollback_discards_changes(conn: psycopg.Connection[tuple[Any, ...]]) -> None:
    conn.execute("CREATE TEMPORARY TABLE note (body text)")
    conn.commit()
    conn.execute("INSERT INTO note VALUES ('draft')")
    conn.rollback()
    assert conn.execute("SELECT count(*) FROM note").fetchone() == (0,)


def test_the_server_is_the_recorded_one(
    conn: psycopg.Connection[tuple[Any, ...]], xprocess: XProcess
) -> None:
    recorded = xprocess.getinfo("postgresql")
    row = conn.execute("SELECT inet_server_port(), current_setting('data_directory')").fetchone()
    assert row == (recorded.data["port"], recorded.data["datadir"])
