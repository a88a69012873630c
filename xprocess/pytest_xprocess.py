"""pytest-xprocess's plugin module name, kept for ``-p xprocess.pytest_xprocess`` and
``pytest_plugins = ["xprocess.pytest_xprocess"]``.

Naming it loads xprocess's plugin (``xprocess.plugin``) once: when the plugin is already loaded
(from its entry point) this module adds nothing; when it is not
(``PYTEST_DISABLE_PLUGIN_AUTOLOAD=1``), registering this module registers it. It holds no hooks
of its own that would run twice.
"""

from __future__ import annotations

from typing import Any

import pytest

from xprocess.localpath import LocalPath

__all__ = ["getrootdir"]


def getrootdir(config: pytest.Config) -> LocalPath:
    """The records root of this run (pytest-xprocess's helper of that name)."""
    from xprocess.paths import records_root

    return LocalPath(records_root(config))


def pytest_addhooks(pluginmanager: Any) -> None:
    """Register xprocess's plugin unless its entry point already did."""
    from xprocess import plugin

    if not pluginmanager.is_registered(plugin):
        name = "xprocess" if pluginmanager.get_plugin("xprocess") is None else plugin.__name__
        pluginmanager.register(plugin, name)
