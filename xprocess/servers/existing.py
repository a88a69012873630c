"""Servers xprocess does not start: a CI service container, a local server, given by address.

With ``--xpostgresql-host`` (``--xredis-host``) the server fixtures connect to that server
instead of starting one, and isolate each test the same way: a database per test copied from a
template (PostgreSQL), a leased logical database (Redis). Nothing is started, recorded or
stopped; what the run made there (its template and test databases, named with the run's id so
two runs never meet) is dropped at its end.
"""

from __future__ import annotations

from typing import Any

from xprocess.errors import StartupError

__all__ = ["check_postgresql", "redis_databases"]


def check_postgresql(name: str, data: dict[str, Any]) -> None:
    """Connect to the existing PostgreSQL server of ``data``; StartupError saying how if not."""
    import psycopg

    kwargs = {k: data[k] for k in ("host", "port", "user", "password") if data.get(k) is not None}
    try:
        with psycopg.connect(**kwargs, dbname="postgres", connect_timeout=10) as conn:
            row = conn.execute(
                "SELECT rolcreatedb OR rolsuper FROM pg_roles WHERE rolname = current_user"
            ).fetchone()
    except psycopg.Error as exc:
        why = " ".join(str(exc).split())  # psycopg's message spans lines
        raise StartupError(
            f"postgresql_proc {name!r}: cannot connect to the existing PostgreSQL server at "
            f"{data['host']}:{data['port']} as {data['user']!r}: {why}; check "
            "xpostgresql_host, xpostgresql_port, xpostgresql_user and xpostgresql_password",
            name=name,
        ) from None
    if not row or not row[0]:
        raise StartupError(
            f"postgresql_proc {name!r}: user {data['user']!r} of the PostgreSQL server at "
            f"{data['host']}:{data['port']} may not create databases, and each test needs one; "
            f"grant it (ALTER ROLE {data['user']} CREATEDB) or set xpostgresql_user to one who may",
            name=name,
        )


def redis_databases(name: str, host: str, port: int, password: str | None) -> int:
    """How many logical databases the existing Redis server has; StartupError if unreachable."""
    import redis

    client = redis.Redis(host=host, port=port, password=password, socket_timeout=10)
    try:
        answer = client.config_get("databases")
    except redis.exceptions.ResponseError:
        return 16  # CONFIG is disabled (a managed service): the default number
    except redis.RedisError as exc:
        raise StartupError(
            f"redis_proc {name!r}: cannot connect to the existing Redis server at {host}:{port}: "
            f"{exc}; check xredis_host, xredis_port and xredis_password",
            name=name,
        ) from None
    finally:
        client.close()
    values: dict[str, Any] = {
        k.decode() if isinstance(k, bytes) else str(k): v for k, v in dict(answer).items()
    }
    return int(values.get("databases") or 16)
