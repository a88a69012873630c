"""xprocess: start the external processes a test suite needs, once, and stop them cleanly.

The ``xprocess`` pytest fixture is an :class:`XProcess`; describe each process with a
:class:`ProcessStarter` subclass and call ``xprocess.ensure(name, Starter)``.
"""

from __future__ import annotations

import importlib

# Not ``typing.TYPE_CHECKING``: the watchdog imports this package with nothing else loaded
# (``python -S -m xprocess.watchdog``), and typing alone would double what that costs.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from xprocess import probes
    from xprocess.errors import (
        AddressInUseError,
        CleanupWarning,
        ExecutableNotFoundError,
        InvalidStarterError,
        PatternNotFoundError,
        ProcessExitedError,
        ServerNotFoundError,
        SharedValueError,
        StartupError,
        StartupTimeoutError,
        UnsafePathError,
        UnsupportedPlatformError,
        XProcessError,
    )
    from xprocess.manager import XProcess, XProcessInfo
    from xprocess.ports import free_port
    from xprocess.records import RecordWarning
    from xprocess.starter import ProcessStarter

__version__ = "0.1.0"

__all__ = [
    "AddressInUseError",
    "CleanupWarning",
    "ExecutableNotFoundError",
    "InvalidStarterError",
    "PatternNotFoundError",
    "ProcessExitedError",
    "ProcessStarter",
    "RecordWarning",
    "ServerNotFoundError",
    "SharedValueError",
    "StartupError",
    "StartupTimeoutError",
    "UnsafePathError",
    "UnsupportedPlatformError",
    "XProcess",
    "XProcessError",
    "XProcessInfo",
    "__version__",
    "free_port",
    "probes",
]

# Names are imported on first use: pytest imports this package (for the plugin) in every run,
# including runs that never use it, and psutil and friends cost start-up time.
_WHERE = {
    "AddressInUseError": "xprocess.errors",
    "ExecutableNotFoundError": "xprocess.errors",
    "CleanupWarning": "xprocess.errors",
    "InvalidStarterError": "xprocess.errors",
    "PatternNotFoundError": "xprocess.errors",
    "ProcessExitedError": "xprocess.errors",
    "StartupError": "xprocess.errors",
    "StartupTimeoutError": "xprocess.errors",
    "UnsupportedPlatformError": "xprocess.errors",
    "XProcessError": "xprocess.errors",
    "XProcess": "xprocess.manager",
    "XProcessInfo": "xprocess.manager",
    "free_port": "xprocess.ports",
    "RecordWarning": "xprocess.records",
    "ProcessStarter": "xprocess.starter",
    "SharedValueError": "xprocess.errors",
    "ServerNotFoundError": "xprocess.errors",
    "UnsafePathError": "xprocess.errors",
}


def __getattr__(name: str) -> Any:
    if name == "probes":  # a module of its own: xprocess.probes.tcp(...)
        value = importlib.import_module("xprocess.probes")
        globals()[name] = value
        return value
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'xprocess' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
