"""Which processes xprocess started: a random token in their environment says so.

Every start gets a fresh token, put into the environment of the process as ``XPROCESS_TOKEN`` and
kept in its record. Descendants inherit it, also those that leave the session with a double fork
and ``setsid()``. A pid, a start time or a session can be recycled or planted in a record; the
token cannot be guessed, and a process that does not carry it is never signalled.

``verify`` answers "does pid P carry token T and belong to this user" in one place: from
``/proc/<pid>/environ`` where /proc exists (``HAVE_PROC_ENVIRON``), from psutil's ``environ()``
elsewhere.

Servers that set their process title (redis, PostgreSQL) overwrite the memory /proc shows as
their environment. So a start also hands its process an open descriptor of a small file holding
the token (``MARK_FILE`` in its control dir), inherited like the environment and kept across
``setsid()`` and the usual daemonizing; on Linux a process holding it carries the token too.

A token also says when it was made: ``<random hex>-<clock ticks since boot>``. Every process
carrying it was created after that (it got the token from its parent, or the mark from an
ancestor), so a search of the process table looks closely (environment, descriptors) only at the
processes created since (``born_ticks``); a process older than its token is never a carrier, even
if it somehow holds the value. Tokens without the suffix (older records) are searched for in
every process.

Some pids are never signalled whatever a record says (``protected_pids``): pid 1, this process
and its ancestors.
"""

from __future__ import annotations

import contextlib
import enum
import os
import secrets
import time
from collections.abc import Collection

import psutil

from xprocess.capabilities import HAVE_PROC, HAVE_PROC_STAT
from xprocess.procfs import all_pids, ancestors, read_stat

__all__ = [
    "HAVE_PROC_ENVIRON",
    "HAVE_PROC_FD",
    "MARK_FILE",
    "TOKEN_VAR",
    "Verdict",
    "allowed_uids",
    "born_ticks",
    "carriers",
    "carries_quickly",
    "new_token",
    "process_uid",
    "protected_pids",
    "verify",
]

TOKEN_VAR = "XPROCESS_TOKEN"
MARK_FILE = ".xprocess-mark"
# Off with XPROCESS_PORTABLE=1, as everything read from /proc (see xprocess.capabilities).
HAVE_PROC_ENVIRON = HAVE_PROC and os.path.exists("/proc/self/environ")
HAVE_PROC_FD = HAVE_PROC and os.path.isdir("/proc/self/fd")


class Verdict(enum.Enum):
    """What is known of a pid against a token."""

    CARRIES = "carries the token"
    ABSENT = "does not carry the token"
    UNKNOWN = "cannot be verified"


_TICKS = os.sysconf("SC_CLK_TCK") if HAVE_PROC_STAT else 100


def new_token() -> str:
    """A fresh token for one start, stamped with when it was made (see ``born_ticks``)."""
    token = secrets.token_hex(16)
    if not HAVE_PROC_STAT:
        return token
    # /proc/<pid>/stat's start time is this clock in whole ticks, rounded down.
    return f"{token}-{int(time.clock_gettime(time.CLOCK_BOOTTIME) * _TICKS)}"


def born_ticks(token: str) -> int | None:
    """The clock tick since boot before which no process carrying ``token`` was created; None
    when the token does not say (made without /proc, or by an earlier version)."""
    if not HAVE_PROC_STAT:
        return None
    _, dash, ticks = token.rpartition("-")
    if not dash or not ticks.isdigit() or len(ticks) > 18:
        return None
    return int(ticks) - 1  # a tick of slack: the stamp and the start time round alike


def created_before(pid: int, ticks: int | None) -> bool:
    """Whether ``pid`` was created before clock tick ``ticks`` (False when it cannot be told)."""
    if ticks is None:
        return False
    stat = read_stat(pid)
    return stat is not None and stat.start_ticks < ticks


def protected_pids() -> frozenset[int]:
    """Pids never signalled: pid 1 (and 0), this process and every one of its ancestors."""
    return frozenset({0, 1, os.getpid(), *ancestors(os.getpid())})


def _environ_entry(pid: int) -> tuple[bytes | None, int]:
    """``XPROCESS_TOKEN=...`` of ``pid`` (None when absent) and its real uid.

    Raises ProcessLookupError when there is no such process, PermissionError when its environment
    cannot be read.
    """
    if HAVE_PROC_ENVIRON:
        return _from_proc(pid)
    return _from_psutil(pid)


def _from_proc(pid: int) -> tuple[bytes | None, int]:
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            status = f.read()
        with open(f"/proc/{pid}/environ", "rb") as f:
            environ = f.read()
    except FileNotFoundError as exc:
        raise ProcessLookupError(pid) from exc
    except ProcessLookupError:
        raise
    except OSError as exc:  # EACCES for another user's process; ESRCH while it exits
        raise PermissionError(f"cannot read the environment of pid {pid}: {exc}") from exc
    uid = -1
    for line in status.splitlines():
        if line.startswith(b"Uid:"):
            uid = int(line.split()[1])
            break
    return _token_value(environ), uid


_ENTRY = TOKEN_VAR.encode() + b"="


def _token_value(environ: bytes) -> bytes | None:
    """The value of the first ``XPROCESS_TOKEN=`` entry of a NUL-separated environment."""
    if environ.startswith(_ENTRY):
        start = len(_ENTRY)
    else:
        found = environ.find(b"\0" + _ENTRY)
        if found < 0:
            return None
        start = found + 1 + len(_ENTRY)
    end = environ.find(b"\0", start)
    return environ[start : end if end >= 0 else len(environ)]


def _read_proc_file(path: str) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunks = []
        while chunk := os.read(fd, 1 << 16):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def _real_uid(pid: int) -> int:
    try:
        status = _read_proc_file(f"/proc/{pid}/status")
    except OSError:
        return -1
    start = status.find(b"\nUid:")
    return int(status[start + 5 :].split(None, 1)[0]) if start >= 0 else -1


def carries_quickly(pid: int, token: str, uids: Collection[int]) -> bool:
    """Whether ``verify(pid, token, uids)`` is ``CARRIES`` (protected pids aside), with as
    few reads as can be, for scans of every process: the environment first; a process whose
    environment names another start's token is not looked at further (a start closes the
    descriptors it does not pass, the mark among them); the mark and the uid only then."""
    if not HAVE_PROC_ENVIRON:
        return verify(pid, token, uids, protected=()) is Verdict.CARRIES
    try:
        value = _token_value(_read_proc_file(f"/proc/{pid}/environ"))
    except OSError:  # gone, or another user's: such a process is never signalled
        return False
    if value is not None and value != token.encode():
        return False
    if value is None and not _holds_mark(pid, token):
        return False
    return _real_uid(pid) in uids


def _from_psutil(pid: int) -> tuple[bytes | None, int]:
    try:
        proc = psutil.Process(pid)
        uid = proc.uids().real
        value = proc.environ().get(TOKEN_VAR)
    except (psutil.NoSuchProcess, psutil.ZombieProcess) as exc:
        raise ProcessLookupError(pid) from exc
    except psutil.Error as exc:
        raise PermissionError(f"cannot read the environment of pid {pid}: {exc}") from exc
    return (value.encode() if value is not None else None), uid


def process_uid(pid: int) -> int:
    """The real uid ``pid`` runs as, or -1 when it cannot be told."""
    try:
        return psutil.Process(pid).uids().real
    except psutil.Error:
        return -1


def allowed_uids(extra: Collection[int] = ()) -> frozenset[int]:
    """The uids whose processes may be signalled: this user's, and those ``extra`` names."""
    return frozenset({os.getuid(), *(u for u in extra if u >= 0)})


def verify(
    pid: int,
    token: str,
    uids: Collection[int] | None = None,
    *,
    protected: Collection[int] | None = None,
) -> Verdict:
    """Whether ``pid`` carries ``token`` and runs as one of ``uids`` (default: this user).

    ``UNKNOWN`` when its environment cannot be read, or when it carries the token but runs as
    another user: such a process is reported, never signalled. A protected pid (default:
    ``protected_pids()``) is ``ABSENT`` whatever its environment holds.
    """
    if not token or pid in (protected if protected is not None else protected_pids()):
        return Verdict.ABSENT
    if created_before(pid, born_ticks(token)):
        return Verdict.ABSENT  # older than the token: it cannot have been given it
    try:
        value, uid = _environ_entry(pid)
    except ProcessLookupError:
        return Verdict.ABSENT
    except PermissionError:
        return Verdict.UNKNOWN
    if value != token.encode() and not _holds_mark(pid, token):
        return Verdict.ABSENT
    allowed = uids if uids is not None else allowed_uids()
    return Verdict.CARRIES if uid in allowed else Verdict.UNKNOWN


def _holds_mark(pid: int, token: str) -> bool:
    """Whether ``pid`` has an open descriptor of a mark file that holds ``token``."""
    if not HAVE_PROC_FD:
        return _holds_mark_by_psutil(pid, token)
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if not target.removesuffix(" (deleted)").endswith("/" + MARK_FILE):
            continue
        with contextlib.suppress(OSError), open(f"/proc/{pid}/fd/{fd}", "rb") as f:
            if f.read(256) == token.encode():
                return True
    return False


def _holds_mark_by_psutil(pid: int, token: str) -> bool:
    """``_holds_mark`` where /proc is not read: psutil lists the files ``pid`` has open."""
    try:
        paths = [f.path for f in psutil.Process(pid).open_files()]
    except psutil.Error:
        return False
    for path in paths:
        if os.path.basename(path) == MARK_FILE:
            with contextlib.suppress(OSError), open(path, "rb") as f:
                if f.read(256) == token.encode():
                    return True
    return False


def carriers(token: str, uids: Collection[int] | None = None) -> list[int]:
    """Every live pid carrying ``token`` that may be signalled (see ``verify``), sorted."""
    if not token:
        return []
    allowed = uids if uids is not None else allowed_uids()
    protected = protected_pids()
    born = born_ticks(token)
    return sorted(
        pid
        for pid in all_pids()
        if pid not in protected
        and not created_before(pid, born)
        and carries_quickly(pid, token, allowed)
    )
