"""pytest-xprocess's module of the same name, kept so that its imports still work.

``from xprocess.xprocess import XProcess, XProcessInfo, ProcessStarter`` gives the real names
(the ones ``xprocess`` exports); new code imports them from ``xprocess``.
"""

from __future__ import annotations

from xprocess.manager import StartedProcess, XProcess, XProcessInfo
from xprocess.starter import ProcessStarter

__all__ = ["ProcessStarter", "XProcess", "XProcessInfo", "XProcessResources"]

# pytest-xprocess's name for what XProcess keeps of each process it started.
XProcessResources = StartedProcess
