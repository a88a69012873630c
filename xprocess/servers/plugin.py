"""pytest glue for ``xprocess.servers``: the settings of the ready-made servers.

Registered as a plugin of its own so that it costs a run nothing beyond these options: the server
modules are imported only by a conftest that uses them.
"""

from __future__ import annotations

import pytest

POSTGRESQL_EXEC_HELP = (
    "the PostgreSQL server program (postgres) or its bin directory, for xprocess.servers"
    ".postgresql (default: PATH, then /usr/lib/postgresql/*/bin and Homebrew's directories)"
)
POSTGRESQL_KEEP_HELP = (
    "keep the PostgreSQL server of xprocess.servers.postgresql running after the run, so the next "
    "run reuses it with its template database (stop it with --xkill)"
)
REDIS_EXEC_HELP = (
    "the redis-server program for xprocess.servers.redis (default: PATH, then the usual places)"
)
REDIS_KEEP_HELP = (
    "keep the Redis server of xprocess.servers.redis running after the run (stop it with --xkill)"
)


def pytest_addoption(parser: pytest.Parser) -> None:
    """Register where the server programs are and whether servers outlive the run."""
    group = parser.getgroup("xprocess", "external processes managed across test runs (xprocess)")
    for name, help_text in (
        ("xpostgresql_exec", POSTGRESQL_EXEC_HELP),
        ("xredis_exec", REDIS_EXEC_HELP),
    ):
        group.addoption(f"--{name.replace('_', '-')}", dest=name, metavar="PATH", help=help_text)
        parser.addini(name, help_text, default=None)
    for name, help_text in (
        ("xpostgresql_keep", POSTGRESQL_KEEP_HELP),
        ("xredis_keep", REDIS_KEEP_HELP),
    ):
        group.addoption(
            f"--{name.replace('_', '-')}", dest=name, action="store_true", help=help_text
        )
        parser.addini(name, help_text, type="bool", default=False)
