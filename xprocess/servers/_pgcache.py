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

A run that will need a new cluster does not wait for its fixture to ask: at the start of the
session, while the xdist workers boot and collect, :func:`make_ahead` begins ``initdb`` in a
thread of the run's main process, and says so in the cache::

    <records root>/.cache/.ahead-<key>.lock     held exclusively while initdb runs
    <records root>/.cache/.ahead-<key>.json     who makes it, and in which scratch directory

A start that finds no cached cluster but such a file waits, on a shared lock, until ``initdb``
is done, and copies the cluster from that scratch directory (:func:`cached_cluster`). The maker
then fills the cache as a start does, waits (on the exclusive lock) until no start is still
copying, and removes the file and its scratch directory. Its death unlocks the lock: the starts
waiting then find no cluster marked ready by a live maker and run ``initdb`` themselves.
"""

from __future__ import annotations

import contextlib
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
from typing import Any

from xprocess.errors import XProcessError
from xprocess.layout import atomic_write
from xprocess.locking import NameLock, flock, try_lock
from xprocess.seams import hold_at
from xprocess.servers import _pgdata

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
AHEAD_PREFIX = ".ahead-"
READY_FILE = "ready"
UNMARKED_AGE = 60.0  # seconds
# How long a start waits for an initdb begun ahead before it runs its own, and how long the maker
# waits at the end for starts still copying its cluster (seconds).
AHEAD_WAIT = 60.0
READERS_WAIT = 30.0
_LOCK_NAME = "postgresql-initdb"

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
    if _take_ahead(cache_dir, key, datadir):
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
        cache_dir.mkdir(parents=True, exist_ok=True)
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


def _ahead_paths(cache_dir: Path, key: str) -> tuple[Path, Path]:
    """The file naming the cluster of ``key`` being made ahead, and its lock."""
    return cache_dir / f"{AHEAD_PREFIX}{key}.json", cache_dir / f"{AHEAD_PREFIX}{key}.lock"


def make_ahead(
    cache_dir: Path, key: str, make: Callable[[Path], None], pristine_scratch: Callable[[], Path]
) -> bool:
    """Begin the pristine cluster of ``key`` before a start asks for it (see the module's
    docstring): ``make`` runs into ``data`` of a scratch directory from ``pristine_scratch()``,
    in a thread that :func:`finish_fills` waits for.

    Nothing is begun when the cache has the cluster or another process is making it. Returns
    whether it began; never raises: a start then makes its own cluster and says what is wrong.
    """
    cached = cache_dir / f"postgresql-{key}"
    if cached.is_dir():
        return False
    info, lock = _ahead_paths(cache_dir, key)
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        fd = try_lock(lock, _LOCK_NAME)
    except (OSError, XProcessError):
        return False
    if fd is None:
        return False  # another run makes it: its starts and ours wait for it alike
    pristine: Path | None = None
    try:
        if cached.is_dir():
            raise FileExistsError(cached)  # cached by a start since the look above
        pristine = pristine_scratch()
        owner = _pgdata.owner_fields(str(cache_dir.resolve().parent))
        atomic_write(info, json.dumps({**owner, "scratch": str(pristine)}))
    except (OSError, XProcessError):
        os.close(fd)
        if pristine is not None:
            shutil.rmtree(pristine, ignore_errors=True)
        return False
    thread = threading.Thread(
        target=_make_ahead,
        args=(fd, info, lock, cached, pristine, make),
        name="xprocess-pg-initdb",
    )
    with _fills_lock:
        _fills.append(thread)
    thread.start()
    return True


def _make_ahead(
    fd: int, info: Path, lock: Path, cached: Path, pristine: Path, make: Callable[[Path], None]
) -> None:
    made = False
    try:
        try:
            make(pristine / "data")
            (pristine / READY_FILE).touch()
            made = True
        except Exception:
            pass  # the start runs initdb itself, and reports what is wrong
        finally:
            # Shared from now on: the starts waiting take it too, and copy the cluster. They
            # wait on the lock file's closes: this open and close wakes them.
            with contextlib.suppress(OSError):
                flock(fd, exclusive=False)
                os.close(os.open(lock, os.O_RDONLY | os.O_NOFOLLOW))
        if made:
            _copy_into_cache(cached.parent, cached, pristine)
    finally:
        os.close(fd)
        _end_ahead(info, lock, pristine)


def _end_ahead(info: Path, lock: Path, pristine: Path) -> None:
    """Once no start copies ``pristine`` any more: remove it, and ``info`` if it names it."""
    try:
        with NameLock(lock, _LOCK_NAME, READERS_WAIT, exclusive=True):
            if (_read_json(info) or {}).get("scratch") == str(pristine):
                info.unlink(missing_ok=True)
            shutil.rmtree(pristine, ignore_errors=True)
    except (OSError, XProcessError):
        pass  # a start copies still: both are swept once this process is gone


def _take_ahead(cache_dir: Path, key: str, datadir: Path) -> bool:
    """Copy into ``datadir`` the cluster a live maker made ahead for ``key``, waiting for its
    initdb to end; False (and no ``datadir``) when there is none to take."""
    info, lock = _ahead_paths(cache_dir, key)
    if not info.exists():
        return False
    try:
        with NameLock(lock, _LOCK_NAME, AHEAD_WAIT, exclusive=False):
            source = _ready_scratch(_read_json(info))
            if source is None:
                return False
            _pgdata.copy_tree(source / "data", datadir)
            return True
    except (OSError, XProcessError, subprocess.CalledProcessError):
        shutil.rmtree(datadir, ignore_errors=True)
        return False


def _ready_scratch(owner: dict[str, Any] | None) -> Path | None:
    """The scratch directory that ``owner`` (an ahead file's content) names, if this user's live
    maker made it and marked its cluster ready; a file that names anything else is not believed."""
    if not owner or owner.get("uid") != os.geteuid() or not _pgdata.maker_alive(owner):
        return None
    scratch = Path(str(owner.get("scratch", "")))
    if not scratch.name.startswith(_pgdata.SCRATCH_PREFIX) or scratch.parent not in set(
        _pgdata.scratch_bases()
    ):
        return None
    marked = _pgdata.owner_of(scratch) or {}
    if any(marked.get(field) != owner.get(field) for field in ("uid", "pid", "create_time")):
        return None
    return scratch if (scratch / READY_FILE).is_file() else None


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


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
    for entry in entries:
        if entry.name.startswith(AHEAD_PREFIX) and entry.suffix == ".json":
            owner = _read_json(entry)
            mine = owner is not None and owner.get("uid") == os.geteuid()
            if mine and owner is not None and not _pgdata.maker_alive(owner):
                entry.unlink(missing_ok=True)
                removed.append(entry)
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
