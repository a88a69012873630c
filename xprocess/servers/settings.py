"""The settings of the ready-made servers: each an ini option and a command-line option.

Every setting is described once (:data:`POSTGRESQL`, :data:`REDIS`): its ini name, its help
(shown by ``pytest --help`` for the option and the ini key alike), its kind and, for some, an
environment variable. :func:`resolve` reads one in a single order, the command line, then the
environment, then the ini file; a value that does not parse is refused with an error naming
where it came from.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass
from typing import Any, Literal

import pytest

__all__ = ["POSTGRESQL", "REDIS", "Setting", "choose", "register", "resolve", "source_of"]

Kind = Literal["text", "int", "bool", "args"]

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("", "0", "false", "no", "off")


@dataclass(frozen=True)
class Setting:
    """One setting: ``ini`` (``xpostgresql_port``) names it; the option is ``--xpostgresql-port``.

    ``kind``: text, int (a port), bool (a flag) or args (a list, split like a shell does on the
    command line and in the environment, one item a line or split in the ini file).
    """

    ini: str
    help: str
    kind: Kind = "text"
    env: str | None = None
    metavar: str | None = None

    @property
    def option(self) -> str:
        return "--" + self.ini.replace("_", "-")

    def full_help(self) -> str:
        return f"{self.help} (environment: {self.env})" if self.env else self.help


def _server(prefix: str, program: str, what: str) -> tuple[Setting, ...]:
    """The settings both servers have: the program, keep, and an existing server's address."""
    env = f"XPROCESS_{prefix.upper()}_"
    return (
        Setting(
            f"x{prefix}_keep",
            f"keep the {what} server running after the run, so the next run reuses it "
            "(stop it with --xkill)",
            kind="bool",
        ),
        Setting(
            f"x{prefix}_host",
            f"use the {what} server already running at this host instead of starting one "
            "(a CI service, a local server); each test still gets its own database",
            env=env + "HOST",
            metavar="HOST",
        ),
        Setting(
            f"x{prefix}_port",
            f"the port of the existing {what} server (with x{prefix}_host), or the port the "
            "started one listens on (default: a free port)",
            kind="int",
            env=env + "PORT",
            metavar="PORT",
        ),
        Setting(
            f"x{prefix}_password",
            f"the password to connect to the existing {what} server with",
            env=env + "PASSWORD",
            metavar="PASSWORD",
        ),
        Setting(
            f"x{prefix}_options",
            f"more settings of the {what} server xprocess starts"
            + (" ('name=value' each, e.g. 'work_mem=64MB')" if prefix == "postgresql" else "")
            + (" (redis-server arguments, e.g. '--maxmemory 64mb')" if prefix == "redis" else ""),
            kind="args",
            metavar="OPTIONS",
        ),
    )


POSTGRESQL_EXEC = Setting(
    "xpostgresql_exec",
    "the PostgreSQL server program (postgres) or its bin directory, for xprocess.servers"
    ".postgresql (default: PATH, then /usr/lib/postgresql/*/bin and Homebrew's directories)",
    metavar="PATH",
)
REDIS_EXEC = Setting(
    "xredis_exec",
    "the redis-server program for xprocess.servers.redis (default: PATH, then the usual places)",
    metavar="PATH",
)

POSTGRESQL: dict[str, Setting] = {
    s.ini.removeprefix("xpostgresql_"): s
    for s in (
        POSTGRESQL_EXEC,
        *_server("postgresql", "postgres", "PostgreSQL"),
        Setting(
            "xpostgresql_user",
            "the PostgreSQL user the tests connect as: the superuser of the started server "
            "(default: postgres), or a user of the existing one allowed to create databases",
            env="XPROCESS_POSTGRESQL_USER",
            metavar="USER",
        ),
        Setting(
            "xpostgresql_dbname",
            "the prefix of the test databases' names (default: tests)",
            metavar="NAME",
        ),
        Setting(
            "xpostgresql_isolation",
            "how tests are kept apart: 'database' (a fresh database per test, the default) or "
            "'transaction' (a database per worker, each test rolled back; for tests that do not "
            "commit); a test's @pytest.mark.xpostgresql_isolation(...) wins",
            metavar="MODE",
        ),
        Setting(
            "xpostgresql_keep_failed",
            "keep the database of a failed test (and the server holding it), and say how to "
            "connect to it with psql; drop it yourself, or stop the server with --xkill",
            kind="bool",
        ),
        Setting(
            "xpostgresql_load",
            "SQL files (relative to the rootdir) that fill the template database each test's "
            "database is copied from",
            kind="args",
            metavar="FILES",
        ),
    )
}
REDIS: dict[str, Setting] = {
    s.ini.removeprefix("xredis_"): s for s in (REDIS_EXEC, *_server("redis", "redis", "Redis"))
}


def register(parser: pytest.Parser, settings: dict[str, Setting]) -> None:
    """Add each setting as an option of the xprocess group and as an ini key, with one help."""
    group = parser.getgroup("xprocess", "external processes managed across test runs (xprocess)")
    for setting in settings.values():
        if setting.kind == "bool":
            group.addoption(
                setting.option, dest=setting.ini, action="store_true", help=setting.full_help()
            )
            # Read as text, not type="bool": pytest's own refusal would not name the setting.
            parser.addini(setting.ini, setting.help + " (true or false)")
            continue
        group.addoption(
            setting.option, dest=setting.ini, metavar=setting.metavar, help=setting.full_help()
        )
        if setting.kind == "args":
            parser.addini(setting.ini, setting.help, type="args")
        else:
            parser.addini(setting.ini, setting.help)


def source_of(config: pytest.Config, setting: Setting) -> tuple[object, str] | None:
    """The raw value of ``setting`` and where it came from; None when it is not set."""
    given = config.getoption(setting.ini, None)
    if given not in (None, False, ""):
        return given, f"{setting.option} on the command line"
    if setting.env and os.environ.get(setting.env, ""):
        return os.environ[setting.env], f"environment variable {setting.env}"
    ini_value = config.getini(setting.ini)
    if ini_value in (None, False, "", []):
        return None
    where = f"ini option {setting.ini}"
    if config.inipath is not None:
        where += f" in {config.inipath.name}"
    return ini_value, where


def resolve(config: pytest.Config, setting: Setting) -> Any:
    """The value of ``setting`` (command line, then environment, then ini), or None when unset.

    int settings give an int, bool ones a bool (False when unset), args ones a list of strings.
    """
    found = source_of(config, setting)
    if found is None:
        return False if setting.kind == "bool" else None
    raw, where = found
    return parse(setting, raw, where)


def parse(setting: Setting, raw: object, where: str) -> Any:
    """``raw`` as ``setting``'s kind; a UsageError naming ``where`` when it is not one."""
    if setting.kind == "bool":
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise pytest.UsageError(f"{setting.ini} is {raw!r} ({where}); use true or false")
    if setting.kind == "int":
        try:
            number = int(str(raw).strip())
        except ValueError:
            number = -1
        if not 0 < number < 65536:
            raise pytest.UsageError(f"{setting.ini} is {raw!r} ({where}); use a port, 1 to 65535")
        return number
    if setting.kind == "args":
        if isinstance(raw, list):
            return [str(item) for item in raw]
        try:
            return shlex.split(str(raw))
        except ValueError as exc:
            raise pytest.UsageError(f"{setting.ini} is {raw!r} ({where}): {exc}") from None
    return str(raw)


def choose(explicit: Any, config: pytest.Config, setting: Setting, default: Any) -> Any:
    """What a fixture factory was given (``explicit``, unless None), else the setting, else
    ``default``: a conftest's own argument is the project's choice and wins."""
    if explicit is not None:
        return explicit
    value = resolve(config, setting)
    return default if value is None else value
