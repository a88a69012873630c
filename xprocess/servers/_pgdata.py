"""Where a PostgreSQL server of ``xprocess.servers`` keeps its cluster, and when that goes.

A test cluster is thrown away, so it needs no disk: it lives in a scratch directory of its own,
on a tmpfs (``/dev/shm``) when there is room there, else in the system's temporary directory::

    <base>/xprocess-postgresql-XXXXXXXX/        the scratch directory, owned by the server's user
    <base>/xprocess-postgresql-XXXXXXXX/owner.json   who made it: records root, uid, pid
    <base>/xprocess-postgresql-XXXXXXXX/data/   the cluster (PGDATA)

The server runs under a small ``sh`` that removes the scratch directory once ``postgres`` has
exited, however it was stopped (end of run, ``--xkill``, a release). What a hard kill left is
swept by the next start of any project of the same user: a scratch directory whose maker and
whose postmaster are both gone.

``initdb`` runs once per PostgreSQL installation and settings: its pristine cluster is kept under
the records root and copied for every later start (``_pgcache``).
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import psutil

__all__ = [
    "SCRATCH_PREFIX",
    "copy_tree",
    "make_scratch",
    "maker_alive",
    "owner_fields",
    "owner_of",
    "postmaster_alive",
    "read_json",
    "read_small",
    "remove_old_datadir",
    "scratch_base",
    "scratch_bases",
    "server_command",
    "sweep",
    "write_owner",
]

SCRATCH_PREFIX = "xprocess-postgresql-"
SMALL_FILE_LIMIT = 64 << 10  # bytes: an owner.json, a postmaster.pid
OWNER_FILE = "owner.json"
TMPFS = Path("/dev/shm")
# A cluster is about 40 MB, and each test database a few MB more: leave the rest of a small tmpfs.
TMPFS_ROOM = 512 << 20

# Runs postgres, removes the scratch directory when it exits, and exits as postgres did. A SIGTERM
# (how xprocess stops a process) is passed on as SIGINT, PostgreSQL's fast shutdown, which does
# not wait for clients; the wait it interrupted is then waited again.
_WRAPPER = """scratch=$1; shift
"$@" &
pid=$!
trap 'kill -INT "$pid" 2>/dev/null' TERM INT
wait "$pid"
status=$?
if kill -0 "$pid" 2>/dev/null; then wait "$pid"; status=$?; fi
rm -rf "$scratch"
exit $status
"""


def scratch_base() -> Path:
    """``/dev/shm`` when it is a writable tmpfs with room, else the system's temporary directory."""
    try:
        stat = os.statvfs(TMPFS)
        if os.access(TMPFS, os.W_OK) and stat.f_bavail * stat.f_frsize >= TMPFS_ROOM:
            return TMPFS
    except OSError:
        pass
    return Path(tempfile.gettempdir())


def scratch_bases() -> list[Path]:
    """Every directory a scratch directory may be made in."""
    return list(dict.fromkeys((scratch_base(), Path(tempfile.gettempdir()), TMPFS)))


def _records_root(control_dir: Path) -> str:
    return str(control_dir.resolve().parent)


def make_scratch(control_dir: Path, user: str | None) -> Path:
    """A new scratch directory for the server of ``control_dir``, marked as this start's."""
    scratch = Path(tempfile.mkdtemp(prefix=SCRATCH_PREFIX, dir=scratch_base()))
    write_owner(scratch, _records_root(control_dir))
    if user is not None:
        shutil.chown(scratch, user)
    return scratch


def owner_fields(records_root: str) -> dict[str, Any]:
    """Who this process is, for ``records_root``: what an ``owner.json`` says."""
    return {
        "records_root": records_root,
        "uid": os.geteuid(),
        "pid": os.getpid(),
        "create_time": psutil.Process().create_time(),
    }


def write_owner(directory: Path, records_root: str) -> None:
    """Mark ``directory`` as made by this process for ``records_root``: its ``owner.json``."""
    owner = owner_fields(records_root)
    (directory / OWNER_FILE).write_text(json.dumps(owner), encoding="utf-8")


def copy_tree(source: Path, target: Path, *, dies_with_parent: bool = False) -> None:
    """Copy the directory ``source`` to ``target`` (not existing yet), owners and modes kept.

    ``dies_with_parent``: the copy is killed if the calling thread's process dies, rather than
    writing on after it (where ``setpriv`` can ask for that, on Linux).
    """
    # cp -a keeps owners and modes (the cluster belongs to the server's user, mode 0700).
    command = ["cp", "-a", str(source), str(target)]
    setpriv = shutil.which("setpriv") if dies_with_parent else None
    if setpriv:
        command = [setpriv, "--pdeathsig", "KILL", "--", *command]
    subprocess.run(command, check=True, capture_output=True)


def server_command(scratch: Path, postgres_args: list[object]) -> list[object]:
    """The command that runs ``postgres_args`` and removes ``scratch`` once the server exited."""
    return ["/bin/sh", "-c", _WRAPPER, "xprocess-postgresql", scratch, *postgres_args]


def read_small(path: Path, limit: int = SMALL_FILE_LIMIT) -> bytes | None:
    """The content of the regular file ``path``, or None: missing, a symlink, not a regular file
    (a FIFO planted in a shared directory would block a read forever), or over ``limit`` bytes.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            return None
        data = f.read(limit + 1)
    return data if len(data) <= limit else None


def read_json(path: Path) -> dict[str, Any] | None:
    """The JSON object in the file ``path`` (read as :func:`read_small` reads), or None."""
    data = read_small(path)
    if data is None:
        return None
    try:
        value = json.loads(data)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def owner_of(scratch: Path) -> dict[str, Any] | None:
    """What ``scratch``'s ``owner.json`` says (see :func:`write_owner`), or None."""
    return read_json(scratch / OWNER_FILE)


def postmaster_alive(datadir: Path) -> bool:
    """Whether the postmaster that ``datadir/postmaster.pid`` names may still run."""
    path = datadir / "postmaster.pid"
    if not os.path.lexists(path):
        return False
    data = read_small(path)
    try:
        pid = int((data or b"").decode("utf-8").split("\n", 1)[0])
    except ValueError:
        return True  # unreadable or half-written: it may be starting
    return psutil.pid_exists(pid)


def maker_alive(owner: dict[str, Any]) -> bool:
    """Whether the process an ``owner.json`` names still runs (the same one: its start time)."""
    try:
        return bool(psutil.Process(int(owner["pid"])).create_time() == owner["create_time"])
    except (psutil.Error, KeyError, TypeError, ValueError):
        return False


def remove_old_datadir(datadir: str | None, control_dir: Path) -> None:
    """Remove the cluster a previous start of this server left, if it is this project's.

    Removed only when it lies under this project's records root, or its scratch directory's
    owner file says this records root made it; and never while its postmaster may still run.
    A project copied with its records (``cp -a projA projB``) names projA's cluster: left alone.
    """
    if not datadir:
        return
    path = Path(datadir)
    if postmaster_alive(path):
        return
    root = Path(_records_root(control_dir))
    if path.resolve().is_relative_to(root):
        shutil.rmtree(path, ignore_errors=True)
        return
    owner = owner_of(path.parent) if path.parent.name.startswith(SCRATCH_PREFIX) else None
    if owner and owner.get("records_root") == str(root) and owner.get("uid") == os.geteuid():
        shutil.rmtree(path.parent, ignore_errors=True)


def sweep() -> list[Path]:
    """Remove the scratch directories this user's dead servers left; return what went."""
    removed = []
    for base in scratch_bases():
        try:
            entries = [e for e in base.iterdir() if e.name.startswith(SCRATCH_PREFIX)]
        except OSError:
            continue
        for scratch in entries:
            owner = owner_of(scratch)
            if owner is None or owner.get("uid") != os.geteuid() or maker_alive(owner):
                continue  # another user's, one being made, or one whose start still runs
            if postmaster_alive(scratch / "data"):
                continue
            shutil.rmtree(scratch, ignore_errors=True)
            removed.append(scratch)
    return removed
