"""Runs pytest with xprocess imported as on Windows, to check it refuses instead of crashing.

The POSIX-only names Windows lacks are removed first and ``sys.platform`` reads "win32" while
xprocess is imported, so every module-level use of them fails here as it would there (the
libraries it uses are imported first, as they are on their platform). Then
``pytest.main(sys.argv[1:])`` runs with the plugin loaded as usual.
"""

from __future__ import annotations

import os
import select
import signal
import sys
import time

import psutil
import pytest

_MISSING = {
    os: ("getsid", "setsid", "killpg", "getpgid", "pidfd_open", "sysconf", "WNOHANG", "fork"),
    signal: ("SIGKILL", "SIGHUP", "SIGQUIT"),
    time: ("CLOCK_BOOTTIME",),
    select: ("poll",),
}


def main() -> int:
    for module, names in _MISSING.items():
        for name in names:
            if hasattr(module, name):
                delattr(module, name)
    sys.modules["fcntl"] = None  # type: ignore[assignment]  # a POSIX-only module: import fails
    real_platform = sys.platform
    sys.platform = "win32"
    try:
        import xprocess.__main__
        import xprocess.commands
        import xprocess.manager
        import xprocess.plugin
        from xprocess import capabilities
    finally:
        sys.platform = real_platform
    assert psutil
    assert xprocess.manager and xprocess.commands and xprocess.__main__ and xprocess.plugin
    assert capabilities.IS_WINDOWS and not capabilities.SUPPORTED
    return int(pytest.main(sys.argv[1:]))


if __name__ == "__main__":
    sys.exit(main())
