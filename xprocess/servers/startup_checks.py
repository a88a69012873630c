"""Settings of the servers checked when pytest starts: a wrong one is a usage error at once.

Without this, a wrong ``--xredis-exec`` would surface only when the first test needs the server,
after collection, once per xdist worker.
"""

from __future__ import annotations

import pytest

from xprocess.errors import ServerNotFoundError
from xprocess.servers._common import find_program
from xprocess.servers.isolation import ISOLATIONS
from xprocess.servers.settings import POSTGRESQL, REDIS, Setting, resolve, source_of

__all__ = ["check_settings"]

# The program each exec setting names, and what must sit beside it.
_PROGRAMS: dict[str, tuple[str, tuple[str, ...]]] = {
    "xpostgresql_exec": ("postgres", ("initdb",)),
    "xredis_exec": ("redis-server", ()),
}


def check_settings(config: pytest.Config) -> None:
    """Parse every setting; check a configured program is there. A UsageError if not."""
    for settings in (POSTGRESQL, REDIS):
        for setting in settings.values():
            resolve(config, setting)  # a value that does not parse is refused here
        _check_program(config, settings["exec"])
        _check_existing(config, settings)
    found = source_of(config, POSTGRESQL["isolation"])
    if found is not None and found[0] not in ISOLATIONS:
        raise pytest.UsageError(
            f"xpostgresql_isolation is {found[0]!r} ({found[1]}); use one of "
            f"{', '.join(ISOLATIONS)}"
        )


def _check_program(config: pytest.Config, setting: Setting) -> None:
    found = source_of(config, setting)
    if found is None:
        return
    program, companions = _PROGRAMS[setting.ini]
    try:
        find_program(
            program,
            configured=str(found[0]),
            setting=setting.ini,
            search=(),
            install="",
            companions=companions,
        )
    except ServerNotFoundError as exc:
        raise pytest.UsageError(f"{exc} (set by {found[1]})") from None


def _check_existing(config: pytest.Config, settings: dict[str, Setting]) -> None:
    """An existing server is its owner's to configure: what only a started one takes is refused."""
    if resolve(config, settings["host"]) is None:
        return
    for key in ("options", "exec", "keep"):
        found = source_of(config, settings[key])
        if found is not None:
            raise pytest.UsageError(
                f"{settings[key].ini} ({found[1]}) applies to a server xprocess starts, but "
                f"{settings['host'].ini} says to use an existing one; drop one of the two"
            )
