"""Which records root a record was written for, and whether that is the root it is read from.

A project copied with its cache (``cp -a projA projB``) carries projA's records: they name
projA's processes, with their exact pid, start time and token. Read in projB, such a record is
*foreign*: it is never reused, and nothing it names is ever signalled from projB; the next start
in projB replaces it without touching the process.

A record carries the real path of its root (``root``) and the inode of the root directory
(``root_inode``) when it was written. It is at home where both match: a copy has another path, or
(copied back over the original's place) another inode. A project moved with ``mv`` has another
path too: its records are foreign there, and its processes start afresh. A record written before
these fields existed is judged by its log path, which lies in the control dir under its root.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Home", "foreign_origin", "home_of", "written_for"]


@dataclass(frozen=True)
class Home:
    """A records root as records name it: its real path and the inode of its directory
    (0 when it cannot be read: a root not made yet)."""

    path: str
    inode: int


def home_of(root: Path) -> Home:
    """The identity of the records root ``root`` now."""
    real = os.path.realpath(root)
    try:
        inode = os.stat(real).st_ino
    except OSError:
        inode = 0
    return Home(real, inode)


def written_for(root: str, logpath: str) -> str:
    """The records root a record with these fields was written for: its ``root``, or, in a
    record older than that field, the root its log lies under (``<root>/<name>/xprocess.log``)."""
    return root or os.path.dirname(os.path.dirname(logpath))


def foreign_origin(root: str, root_inode: int, logpath: str, home: Home) -> str | None:
    """None when a record with these fields was written for ``home``; else the records root it
    was written for (where it came from)."""
    origin = written_for(root, logpath)
    if not origin:
        return None  # no path at all: nothing says it came from elsewhere (a pid assigned by hand)
    same_path = origin == home.path if root else os.path.realpath(origin) == home.path
    if not same_path:
        return origin
    if root_inode and home.inode and root_inode != home.inode:
        return origin  # a copy put where the original was: same path, another directory
    return None
