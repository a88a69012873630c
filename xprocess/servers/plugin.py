"""pytest glue for ``xprocess.servers``: the settings of the ready-made servers.

Registered as a plugin of its own so that it costs a run nothing beyond these options: the server
modules are imported only by a conftest that uses them.
"""

from __future__ import annotations

import pytest

from xprocess.servers.settings import POSTGRESQL, REDIS, register
from xprocess.servers.startup_checks import check_settings


def pytest_addoption(parser: pytest.Parser) -> None:
    """Register every setting of the servers, each as an option and an ini key."""
    register(parser, POSTGRESQL)
    register(parser, REDIS)


def pytest_configure(config: pytest.Config) -> None:
    """Refuse a setting that cannot be right before anything starts (once, not in each worker)."""
    if not hasattr(config, "workerinput") and not (
        config.getoption("xshow", False) or config.getoption("xkill", False)
    ):
        check_settings(config)
