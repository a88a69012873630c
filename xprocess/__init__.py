"""xprocess: start the external processes a test suite needs, once, and stop them cleanly.

The ``xprocess`` pytest fixture is an :class:`XProcess`; describe each process with a
:class:`ProcessStarter` subclass and call ``xprocess.ensure(name, Starter)``.
"""

from __future__ import annotations

from xprocess.errors import (
    InvalidStarterError,
    PatternNotFoundError,
    ProcessExitedError,
    StartupError,
    StartupTimeoutError,
    XProcessError,
)
from xprocess.manager import XProcess, XProcessInfo
from xprocess.ports import free_port
from xprocess.records import RecordWarning
from xprocess.starter import ProcessStarter

__version__ = "0.1.0"

__all__ = [
    "InvalidStarterError",
    "PatternNotFoundError",
    "ProcessExitedError",
    "ProcessStarter",
    "RecordWarning",
    "StartupError",
    "StartupTimeoutError",
    "XProcess",
    "XProcessError",
    "XProcessInfo",
    "__version__",
    "free_port",
]
