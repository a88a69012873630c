"""The pristine PostgreSQL cluster ``initdb`` made, kept under the records root for later starts.

``initdb`` runs once per PostgreSQL installation and settings; every later start copies its
pristine cluster from ``<records root>/.cache/postgresql-<key>``. A start that finds none runs
``initdb`` on the tmpfs, copies the result there for its server (tmpfs to tmpfs, a tenth of a
second) and starts it at once; the copy into the cache, on the disk, is made by a thread of the
starting process while the server starts and the tests run::

    <scratch base>/xprocess-postgresql-XXXXXXXX/         a scratch directory (see ``_pgdata``)
                                              data/      initdb's pristine cluster
    <records root>/.cache/.new-XXXXXXXX/owner.json      the copy being made, and who makes it
    <records root>/.cache/.new-XXXXXXXX/data/
    <records root>/.cache/postgresql-<key>/             the cache, renamed into place whole

The copy is synced to disk before its rename, so a reader (and a reboot) sees a whole cluster or
none. The pristine scratch directory goes once the copy is made or has failed. What a hard kill
of the starting process leaves, a pristine scratch directory and a ``.new-`` copy, both marked
with that process, is swept by a later start once that process is gone: the first by
``_pgdata.sweep``, the second by the next start in the same records root.

A run that will need a new cluster begins ``initdb`` when its session starts, before any start
asks for it (:func:`make_ahead`); a start without a cached cluster takes that one (``_pgahead``).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from xprocess.seams import hold_at
from xprocess.servers import _pgahead, _pgdata

__all__ = [
    "HOLD_CACHE_FILL_VAR",
    "cache_key",
    "cached_cluster",
    "finish_fills",
    "make_ahead",
    "sweep_cache",
]

CACHE_FORMAT = "1"
PENDING_PREFIX = ".new-"
UNMARKED_AGE = 60.0  # seconds

# A test seam: with this variable naming a file, the thread filling the cache writes its
# process's pid there once its copy is made (before the rename) and waits until the file is
# removed, so that a test can kill the process in the middle of the fill.
HOLD_CACHE_FILL_VAR = "XPROCESS_TEST_HOLD_CACHE_FILL"

_fills: list[threading.Thread] = []
_fills_lock = threading.Lock()


def _stat_key(path: Path) -> str:
    stat = path.resolve().stat()
    return f"{path.resolve()} {stat.st_size} {stat.st_mtime_ns}"


def cache_key(postgres: Path, initdb_args: list[str], owner: str | None) -> str:
    """What the pristine cluster depends on: the programs (their files), initdb's arguments and
    the user its files belong to (``None``: the one running the tests)."""
    digest = hashlib.sha256(f"format {CACHE_FORMAT}\nowner {owner or os.geteuid()}\n".encode())
    for program in (postgres, postgres.parent / "initdb"):
        digest.update(f"{_stat_key(program)}\n".encode())
    digest.update(json.dumps(initdb_args).encode())
    return digest.hexdigest()[:16]


def cached_cluster(
    cache_dir: Path,
    key: str,
    datadir: Path,
    make: Callable[[Path], None],
    pristine_scratch: Callable[[], Path],
) -> bool:
    """Fill ``datadir`` (not existing yet) with the pristine cluster of ``key``.

    From the copy under ``cache_dir`` when there is one. Else ``make(target)`` runs initdb into
    ``data`` of a new scratch directory from ``pristine_scratch()``; that is copied to
    ``datadir``, and into the cache by a thread (see :func:`finish_fills`), which then removes
    the scratch directory. Returns whether the cache was used.
    """
    sweep_cache(cache_dir)
    cached = cache_dir / f"postgresql-{key}"
    if cached.is_dir():
        _pgdata.copy_tree(cached, datadir)
        return True
    if _pgahead.take(cache_dir, key, datadir):
        return True
    if cached.is_dir():  # the maker ahead filled it meanwhile
        _pgdata.copy_tree(cached, datadir)
        return True
    pristine = pristine_scratch()
    try:
        make(pristine / "data")
        _pgdata.copy_tree(pristine / "data", datadir)
    except BaseException:
        shutil.rmtree(pristine, ignore_errors=True)
        raise
    fill = threading.Thread(
        target=_fill, args=(cache_dir, cached, pristine), name="xprocess-pg-cache"
    )
    with _fills_lock:
        _fills.append(fill)
    fill.start()
    return False


def finish_fills() -> None:
    """Wait until the cache copies this process began are made (or have failed).

    The threads are not daemons, so the interpreter waits for them at its exit too; the fixture
    waits at the end of its session, so that a run leaves its cache complete.
    """
    with _fills_lock:
        fills = list(_fills)
    for fill in fills:
        fill.join()
    with _fills_lock:
        _fills[:] = [fill for fill in _fills if fill.is_alive()]


def _fill(cache_dir: Path, cached: Path, pristine: Path) -> None:
    try:
        _copy_into_cache(cache_dir, cached, pristine)
    finally:
        shutil.rmtree(pristine, ignore_errors=True)


def _copy_into_cache(cache_dir: Path, cached: Path, pristine: Path) -> None:
    # Any failure only costs the next start an initdb: nothing here may raise.
    try:
        cache_dir.mkdir(exist_ok=True)  # in the records root, which the caller's fixture made
        aside = Path(tempfile.mkdtemp(prefix=PENDING_PREFIX, dir=cache_dir))
        try:
            _pgdata.write_owner(aside, str(cache_dir.resolve().parent))
            _pgdata.copy_tree(pristine / "data", aside / "data", dies_with_parent=True)
            _sync_tree(aside / "data")
            hold_at(HOLD_CACHE_FILL_VAR, os.getpid())
            (aside / "data").rename(cached)
            _sync_directory(cache_dir)
        finally:
            shutil.rmtree(aside, ignore_errors=True)
        for other in cache_dir.glob("postgresql-*"):
            if other != cached:
                shutil.rmtree(other, ignore_errors=True)
    except (OSError, subprocess.CalledProcessError):
        pass  # the disk is full, read-only, or another start cached it first


def make_ahead(
    cache_dir: Path, key: str, make: Callable[[Path], None], pristine_scratch: Callable[[], Path]
) -> bool:
    """Begin the pristine cluster of ``key`` before a start asks for it (see ``_pgahead``):
    ``make`` runs into ``data`` of a scratch directory from ``pristine_scratch()``, then the cache
    is filled from it, in a thread that :func:`finish_fills` waits for. First, what dead makers
    and starts left is swept. Returns whether it began; never raises."""
    _pgdata.sweep()
    sweep_cache(cache_dir)
    cached = cache_dir / f"postgresql-{key}"
    if cached.is_dir():
        return False
    thread = _pgahead.begin(
        cache_dir,
        key,
        make,
        pristine_scratch,
        lambda pristine: _copy_into_cache(cache_dir, cached, pristine),
    )
    if thread is None:
        return False
    with _fills_lock:
        _fills.append(thread)
    return True


def _sync_tree(root: Path) -> None:
    # Written first and synced after: the files' writeback runs at once, not one after another.
    for directory, _, files in os.walk(root):
        for name in files:
            _sync(os.path.join(directory, name))
        _sync(directory)


def _sync_directory(path: Path) -> None:
    _sync(str(path))


def _sync(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _age(path: Path) -> float:
    try:
        return time.time() - path.stat().st_mtime
    except OSError:
        return 0.0


def sweep_cache(cache_dir: Path) -> list[Path]:
    """Remove the unfinished copies under ``cache_dir`` whose makers are gone, and the ahead
    files (see :func:`make_ahead`) of this user's makers that are gone; return them.

    A copy is removed when its ``owner.json`` names this user and a process that has exited;
    one without ``owner.json`` nor a cluster, older than a minute (a kill between making and
    marking it), too. Anything else (another user's, one being made, a cluster an older version
    left unmarked) is left alone.
    """
    removed: list[Path] = []
    try:
        entries = list(cache_dir.iterdir())
    except OSError:
        return removed
    pending = [e for e in entries if e.name.startswith(PENDING_PREFIX)]
    removed += _pgahead.sweep(cache_dir, entries)
    for entry in pending:
        owner = _pgdata.owner_of(entry)
        if owner is None:
            # A live maker marks its copy at once: removing an unmarked one just made could
            # take files from under its copy, which would then be renamed into place short.
            if not (entry / "data").exists() and _age(entry) > UNMARKED_AGE:
                shutil.rmtree(entry, ignore_errors=True)
                removed.append(entry)
            continue
        if owner.get("uid") != os.geteuid() or _pgdata.maker_alive(owner):
            continue
        shutil.rmtree(entry, ignore_errors=True)
        removed.append(entry)
    return removed
