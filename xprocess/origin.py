"""Which records root a record was written for, and whether that is the root it is read from.

A project copied with its cache (``cp -a projA projB``) carries projA's records: they name
projA's processes, with their exact pid, start time and token. Read in projB, such a record is
*foreign*: it is never reused, and nothing it names is ever signalled from projB; the next start
in projB replaces it without touching the process.

A record carries the real path of its root (``root``) and the inode of the root directory
(``root_inode``) when it was written. It is at home where both match: a copy has another path, or
(copied back over the original's place) another inode. A record written before these fields
existed is judged by its log path, which lies in the control dir under its root.

A project moved with ``mv`` has another path too, but the same directory: the record's root
device and inode are this root's, and its old path no longer leads to that directory. Such a
record is *moved* (``moved_here``): its process was started by this project, at its old place,
so it is not reused (its paths are gone) but stopped, by the next start of its name or by
``--xkill``. A copy never passes for a move: its root is another directory.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Home", "foreign_origin", "home_of", "moved_here", "written_for"]


@dataclass(frozen=True)
class Home:
    """A records root as records name it: its real path, and the inode and device of its
    directory (0 when it cannot be read: a root not made yet)."""

    path: str
    inode: int
    device: int = 0


def home_of(root: Path) -> Home:
    """The identity of the records root ``root`` now."""
    real = os.path.realpath(root)
    try:
        info = os.stat(real)
    except OSError:
        return Home(real, 0)
    return Home(real, info.st_ino, info.st_dev)


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


def moved_here(root: str, root_inode: int, root_device: int, home: Home) -> bool:
    """Whether a record with these fields was written for ``home``'s directory at another path
    it has left (the project was moved): same device and inode, and the old path no longer
    leads there."""
    if not root or root == home.path or not home.inode or not home.device:
        return False
    if (root_inode, root_device) != (home.inode, home.device):
        return False
    try:
        there = os.stat(root)
    except OSError:
        return True  # the old path is gone: the directory was moved from it
    # Still there (a bind mount, another name of the same directory): not a move.
    return (there.st_ino, there.st_dev) != (root_inode, root_device)
