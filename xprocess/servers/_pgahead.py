"""A new PostgreSQL cluster begun before a start asks for it, and handed to that start.

A run that will need a new cluster does not wait for its fixture: when the session starts, while
the xdist workers boot and collect, the run's main process runs ``initdb`` in a thread
(:func:`begin`), into a scratch directory of its own (see ``_pgdata``)::

    <records root>/.cache/.ahead-<key>.lock     held exclusively by the maker while initdb runs
    <records root>/.cache/.ahead-<key>.json     who makes it (owner.json's fields), and where
    <scratch>/data/                             initdb's cluster
    <scratch>/ready                             made once initdb has succeeded
    <scratch>/.use.lock                         held shared by the maker and by each start copying

A start that finds no cached cluster but such a file (:func:`take`) waits on the first lock,
shared, until ``initdb`` is done; takes the scratch directory's use lock, shared; copies the
cluster if the file is to be believed; and checks again after the copy that the maker still runs
and the cluster is still marked ready (a sweep of a dead maker's directory could have cut the copy
short). Otherwise it runs ``initdb`` itself. The maker lets go of the first lock once ``initdb``
is done, fills the cache (a function it was given), then takes its use lock exclusively, which
waits until no start copies any more, and removes its file and its scratch directory.

No lock is converted between shared and exclusive (``flock`` does not promise to do that
atomically). The maker holds its records root's runs lock, shared, all along, as a fixture does:
a ``--cache-clear`` elsewhere waits instead of moving the records from under it. A maker's death
unlocks everything it held; the starts waiting then find no live maker and run ``initdb``
themselves, and what it left is swept (:func:`sweep`, and ``_pgdata.sweep``).

Nothing here raises: a start can always make its own cluster, and says what is wrong if it can't.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from xprocess.errors import XProcessError
from xprocess.layout import atomic_write
from xprocess.locking import NameLock, try_lock
from xprocess.servers import _pgdata

__all__ = ["AHEAD_PREFIX", "READY_FILE", "USE_LOCK", "begin", "sweep", "take"]

AHEAD_PREFIX = ".ahead-"
READY_FILE = "ready"
USE_LOCK = ".use.lock"
# How long a start waits for an initdb begun ahead before it runs its own, and how long the maker
# waits at the end for starts still copying its cluster (seconds).
AHEAD_WAIT = 60.0
READERS_WAIT = 30.0
_LOCK_NAME = "postgresql-initdb"


def paths(cache_dir: Path, key: str) -> tuple[Path, Path]:
    """The file naming the cluster of ``key`` being made ahead, and the lock held while it is."""
    return cache_dir / f"{AHEAD_PREFIX}{key}.json", cache_dir / f"{AHEAD_PREFIX}{key}.lock"


def begin(
    cache_dir: Path,
    key: str,
    make: Callable[[Path], None],
    pristine_scratch: Callable[[], Path],
    fill: Callable[[Path], None],
) -> threading.Thread | None:
    """Begin the cluster of ``key``: ``make`` runs into ``data`` of a scratch directory from
    ``pristine_scratch()``, then ``fill(scratch)`` copies it into the cache, in the thread
    returned (already started). None when nothing was begun: the records root is not there,
    another process makes that cluster or has made it, or anything failed."""
    held: list[int] = []  # what to let go of, and to remove, if nothing is begun
    made: list[Path] = []
    try:
        thread = _begin(cache_dir, key, make, pristine_scratch, fill, held, made)
    except Exception:
        thread = None
    if thread is None:
        for fd in reversed(held):
            with contextlib.suppress(OSError):
                os.close(fd)
        for scratch in made:
            shutil.rmtree(scratch, ignore_errors=True)
    return thread


def _begin(
    cache_dir: Path,
    key: str,
    make: Callable[[Path], None],
    pristine_scratch: Callable[[], Path],
    fill: Callable[[Path], None],
    held: list[int],
    made: list[Path],
) -> threading.Thread | None:
    from xprocess.paths import hold_records

    info, making = paths(cache_dir, key)
    runs = hold_records(cache_dir.parent)
    if runs is not None:
        held.append(runs)
    if not cache_dir.parent.is_dir():
        return None
    cache_dir.mkdir(exist_ok=True)
    fd = try_lock(making, _LOCK_NAME)
    if fd is None:
        return None  # another run makes it: its starts and ours wait for it alike
    held.append(fd)
    if ready_scratch(_pgdata.read_json(info)) is not None:
        return None  # made by another run, which fills the cache now
    pristine = pristine_scratch()
    made.append(pristine)
    use = try_lock(pristine / USE_LOCK, _LOCK_NAME, exclusive=False)
    if use is None:
        return None
    held.append(use)
    owner = _pgdata.owner_fields(str(cache_dir.resolve().parent))
    atomic_write(info, json.dumps({**owner, "scratch": str(pristine)}))
    locks = _Locks(runs=runs, making=fd, use=use)
    thread = threading.Thread(
        target=_make, args=(locks, info, pristine, make, fill), name="xprocess-pg-initdb"
    )
    thread.start()
    return thread


class _Locks(NamedTuple):
    """What a maker holds: its records root's runs lock (None: there is none), the lock held
    while initdb runs, and its share of its scratch directory's use lock."""

    runs: int | None
    making: int
    use: int


def _make(
    locks: _Locks,
    info: Path,
    pristine: Path,
    make: Callable[[Path], None],
    fill: Callable[[Path], None],
) -> None:
    try:
        made = False
        try:
            make(pristine / "data")
            (pristine / READY_FILE).touch()
            made = True
        except Exception:
            pass  # the start runs initdb itself, and reports what is wrong
        finally:
            os.close(locks.making)  # the starts waiting on it wake, and copy the cluster
        if made:
            fill(pristine)
    finally:
        os.close(locks.use)
        _end(info, pristine)
        if locks.runs is not None:
            os.close(locks.runs)


def _end(info: Path, pristine: Path) -> None:
    """Once no start copies ``pristine`` any more: remove it, and ``info`` if it names it."""
    try:
        with NameLock(pristine / USE_LOCK, _LOCK_NAME, READERS_WAIT, exclusive=True):
            if (_pgdata.read_json(info) or {}).get("scratch") == str(pristine):
                info.unlink(missing_ok=True)
            shutil.rmtree(pristine, ignore_errors=True)
    except (OSError, XProcessError):
        pass  # a start copies still: both are swept once this process is gone


def take(cache_dir: Path, key: str, datadir: Path) -> bool:
    """Copy into ``datadir`` the cluster a live maker made ahead for ``key``, waiting for its
    initdb to end; False (and no ``datadir``) when there is none to take."""
    info, making = paths(cache_dir, key)
    if not info.exists():
        return False
    try:
        with NameLock(making, _LOCK_NAME, AHEAD_WAIT, exclusive=False):
            owner = _pgdata.read_json(info)
            source = ready_scratch(owner)
            if source is None:
                return False
            use = NameLock(source / USE_LOCK, _LOCK_NAME, READERS_WAIT, exclusive=False)
            use.acquire()
        with use:
            if ready_scratch(owner) != source:
                return False  # removed by its maker since: the cache has it now
            _pgdata.copy_tree(source / "data", datadir)
            if ready_scratch(owner) == source:
                return True
    except (OSError, XProcessError, subprocess.CalledProcessError):
        pass
    # Cut short: the maker died and a sweep removed its directory during the copy.
    shutil.rmtree(datadir, ignore_errors=True)
    return False


def ready_scratch(owner: dict[str, Any] | None) -> Path | None:
    """The scratch directory that ``owner`` (an ahead file's content) names, if this user's live
    maker made it and marked its cluster ready; a file that names anything else is not believed."""
    if not owner or owner.get("uid") != os.geteuid() or not _pgdata.maker_alive(owner):
        return None
    scratch = Path(str(owner.get("scratch", "")))
    if not scratch.name.startswith(_pgdata.SCRATCH_PREFIX) or scratch.is_symlink():
        return None
    if scratch.parent not in _pgdata.scratch_bases():
        return None
    marked = _pgdata.owner_of(scratch) or {}
    if any(marked.get(field) != owner.get(field) for field in ("uid", "pid", "create_time")):
        return None
    return scratch if (scratch / READY_FILE).is_file() else None


def sweep(cache_dir: Path, entries: list[Path]) -> list[Path]:
    """Remove, of ``entries`` (``cache_dir``'s), the ahead files of this user's makers that are
    gone, each under its lock (a new maker may be writing its own there); return them."""
    removed = []
    for entry in entries:
        if not (entry.name.startswith(AHEAD_PREFIX) and entry.suffix == ".json"):
            continue
        owner = _pgdata.read_json(entry)
        if owner is None or owner.get("uid") != os.geteuid() or _pgdata.maker_alive(owner):
            continue
        with contextlib.suppress(OSError, XProcessError):
            fd = try_lock(entry.with_suffix(".lock"), _LOCK_NAME)
            if fd is None:
                continue  # a maker, or a start taking its cluster, works on it now
            try:
                if _pgdata.read_json(entry) == owner:
                    entry.unlink()
                    removed.append(entry)
            finally:
                os.close(fd)
    return removed
