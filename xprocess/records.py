"""Records on disk: one JSON file per managed process, and the states a record goes through.

Where the files live is ``layout.py``'s business. A record is replaced atomically, so a reader
sees the old one or the new one, never a mix. A record that is missing, empty, malformed (any
field of the wrong type), a symlink, or owned by another user reads as "no process" with a
``RecordWarning``; every command goes on with the other records. A control dir that is a
symlink is refused.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil

from xprocess.errors import type_name
from xprocess.layout import Layout, RecordWarning, atomic_write, read_or_warn, warn
from xprocess.liveness import BOOT_ID, exited_zero, find_process, identify, is_alive
from xprocess.origin import Home, foreign_origin, home_of, moved_here
from xprocess.record_fields import CHECKS, MAX_NAME_BYTES, short, validate_name
from xprocess.tokens import allowed_uids, carriers

if TYPE_CHECKING:
    from xprocess.runs import Run
    from xprocess.starter import LaunchPlan

__all__ = [
    "FAILED",
    "MAX_NAME_BYTES",
    "READY",
    "STARTING",
    "ProcessRecord",
    "RecordStore",
    "RecordWarning",
    "atomic_write",
    "refuse_symlink",
    "validate_name",
]

STARTING = "starting"
READY = "ready"
FAILED = "failed"


def _own_start_time() -> float:
    identity = identify(os.getpid())
    return identity.create_time if identity is not None else 0.0


def refuse_symlink(path: Path, what: str, name: str) -> None:
    """Raise UnsafePathError if ``path`` is a symlink: xprocess writes nothing through one."""
    from xprocess.errors import UnsafePathError

    if path.is_symlink():
        raise UnsafePathError(
            f"the {what} of {name!r}, {path}, is a symlink (to {os.readlink(path)}); xprocess "
            "does not write through symlinks under its records root. Remove it (the next "
            "start makes a real one).",
            name=name,
        )


@dataclasses.dataclass
class ProcessRecord:
    """What xprocess knows of one managed process, and how that changes::

        (no record) --starting()--> STARTING --ready()----> READY
                                        |
                                        +----failed()---> FAILED
        (no record) --not_started()-----------------------> FAILED

    A start writes a STARTING record with its token before it spawns the process, and again
    with the pid once it is spawned, so a caller that dies mid-start, at any line, leaves a
    record the next caller recognises (and stops what carries its token) instead of an unknown
    process. A FAILED record carries the error, for the other workers of the same run: each is
    told once (``replayed_to``), and the caller that made the attempt (``started_by``) starts
    afresh when it asks again.

    ``create_time`` (seconds since the epoch) and ``start_since_boot`` (seconds after boot, on
    Linux) say when ``pid`` was created: a pid whose process started at another time has been
    recycled and is not ours; nor is one that does not lead its session when ``leads_session``
    says ours did. ``log_offset`` is the byte offset of
    the log where this start's output begins. ``state`` is ``starting``, ``ready`` or ``failed``.
    ``users`` lists the test runs using a process that is to be stopped when they end (each with
    the pid and start time of the run's main process, to tell a run that crashed).
    """

    name: str
    pid: int
    create_time: float
    argv: list[str]
    cwd: str
    logpath: str
    log_offset: int
    started_at: float
    state: str = STARTING
    run_id: str = ""
    starter: str = ""
    terminate_at_end: bool = False
    terminate_on_interrupt: bool = False
    users: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    data: dict[str, Any] = dataclasses.field(default_factory=dict)
    error_type: str = ""
    error_message: str = ""
    start_since_boot: float | None = None
    boot_id: str = ""
    started_by: int = 0
    replayed_to: list[int] = dataclasses.field(default_factory=list)
    holders: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    released_in: str = ""
    fingerprint: str = ""
    # Missing from a record: required (every process xprocess starts leads its session).
    leads_session: bool = True
    token: str = ""
    uid: int = -1
    started_by_time: float = 0.0
    # The records root this record was written for (see ``xprocess.origin``): stamped by
    # ``RecordStore.write``; a record read under another root is foreign.
    root: str = ""
    root_inode: int = 0
    root_device: int = 0

    @classmethod
    def before_spawn(
        cls,
        plan: LaunchPlan,
        *,
        cwd: Path,
        logpath: Path,
        run: Run,
        holder: dict[str, Any] | None,
        token: str,
        uid: int,
    ) -> ProcessRecord:
        """The record of a start of ``plan`` about to spawn its process with ``token``.

        Written before the spawn: whoever comes next (a successor's start, ``--xkill``) finds
        and stops what carries the token, even if this process dies before the pid is known.
        ``uid`` is the user the process will run as.
        """
        stops = plan.terminate_at_end or plan.terminate_on_interrupt
        return cls(
            name=plan.name,
            pid=0,
            create_time=0.0,
            boot_id=BOOT_ID,
            started_by=os.getpid(),
            started_by_time=_own_start_time(),
            argv=plan.argv,
            cwd=str(cwd),
            logpath=str(logpath),
            log_offset=0,
            started_at=time.time(),
            state=STARTING,
            run_id=run.id,
            starter=plan.starter,
            terminate_at_end=plan.terminate_at_end,
            terminate_on_interrupt=plan.terminate_on_interrupt,
            users=[run.entry()] if stops else [],
            holders=[holder] if holder is not None else [],
            data=plan.data,
            token=token,
            uid=uid,
        )

    def spawned(self, pid: int, offset: int) -> None:
        """The process is spawned as ``pid``; its output begins at byte ``offset`` of the log."""
        identity = identify(pid)  # None only if it is already gone; readiness says why
        self.pid = pid
        self.create_time = identity.create_time if identity is not None else time.time()
        self.start_since_boot = identity.since_boot if identity is not None else None
        self.leads_session = bool(identity is not None and identity.leads_session)
        self.log_offset = offset
        self.started_at = time.time()

    @classmethod
    def not_started(
        cls, name: str, label: str, *, cwd: Path, logpath: Path, run_id: str, error: BaseException
    ) -> ProcessRecord:
        """A start of ``name`` that failed before any process was spawned."""
        record = cls(
            name=name,
            pid=0,
            create_time=0.0,
            argv=[],
            cwd=str(cwd),
            logpath=str(logpath),
            log_offset=0,
            started_at=time.time(),
            run_id=run_id,
            starter=label,
            started_by=os.getpid(),
        )
        record.failed(error)
        return record

    def ready(self, data: dict[str, Any]) -> None:
        """STARTING -> READY: the process answered; ``data`` is what its starter recorded."""
        self.state = READY
        self.data = data

    def failed(self, error: BaseException) -> None:
        """-> FAILED: ``error`` is what every other caller of this run will be told, once."""
        self.state = FAILED
        self.error_type = type_name(error)  # module:qualname, for other workers to rebuild
        self.error_message = str(error) or repr(error)
        self.replayed_to = []

    def is_alive(self, *, ignore_zombies: bool = True) -> bool:
        """Whether the recorded process still runs (not a recycled pid).

        Only the recorded process counts, with one exception: a launcher that exited 0 and has
        not been reaped yet by the process that started it, which hands the record over to the
        daemon the launcher left when it reaps it (``starting.settle``). While that launcher
        holds its pid, the processes carrying its token stand for it. A server that crashed
        (killed, or exited non-zero) is dead whatever child of it lives on; so is one stopped by
        ``terminate(kill_proc_tree=False)``, whose children the caller chose to leave running.
        """
        pid_alive = is_alive(
            self.pid,
            self.create_time,
            self.start_since_boot,
            self.boot_id,
            ignore_zombies=ignore_zombies,
            leads_session=self.leads_session,
        )
        if pid_alive or not self.token or not self._handing_over():
            return pid_alive
        return bool(carriers(self.token, allowed_uids([self.uid])))

    def _handing_over(self) -> bool:
        """Whether the recorded process is a launcher that exited 0, not reaped yet."""
        identity = identify(self.pid)
        if identity is None or not identity.zombie:
            return False
        if not is_alive(
            self.pid,
            self.create_time,
            self.start_since_boot,
            self.boot_id,
            ignore_zombies=False,
            leads_session=self.leads_session,
        ):
            return False  # another process's zombie holds the pid now
        zero = exited_zero(self.pid, identity)
        if zero is not None:
            return zero
        # Not our child and no /proc to read its status from: its starter may still hand over.
        return is_alive(self.started_by, self.started_by_time or None)

    def find_process(self) -> psutil.Process | None:
        """A psutil handle of the recorded process if it still runs, else None."""
        return find_process(
            self.pid,
            self.create_time,
            self.start_since_boot,
            self.boot_id,
            leads_session=self.leads_session,
        )

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ProcessRecord:
        """Parse a record; ValueError names the first field of the wrong shape."""
        try:
            raw = json.loads(text)
        except RecursionError:
            raise ValueError("nested too deeply to be a record") from None
        if not isinstance(raw, dict):
            raise ValueError("a record must be a JSON object")
        for field, value in raw.items():
            check = CHECKS.get(field)
            if check is not None and not check(value):
                raise ValueError(f"field {field!r} has a wrong value {short(value)}")
        missing = sorted(_REQUIRED - raw.keys())
        if missing:
            raise ValueError(f"missing fields {', '.join(missing)}")
        return cls(**{k: v for k, v in raw.items() if k in CHECKS})


_REQUIRED = frozenset(
    f.name
    for f in dataclasses.fields(ProcessRecord)
    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
)


class RecordStore:
    """The records of processes under a records root."""

    def __init__(self, root: Path) -> None:
        self.layout = Layout(root)
        self.root = self.layout.root
        # For read_unchanged: each name's record path, and the last record read with the
        # identity of its file then.
        self._paths: dict[str, str] = {}
        self._last: dict[str, tuple[tuple[int, ...], ProcessRecord]] = {}
        self._home: Home | None = None

    def controldir(self, name: str) -> Path:
        return self.layout.controldir(name)

    def record_path(self, name: str) -> Path:
        return self.layout.record(name)

    def log_path(self, name: str) -> Path:
        return self.layout.log(name)

    def lock_path(self, name: str) -> Path:
        return self.layout.process_lock(name)

    def ensure_dirs(self, name: str) -> Path:
        """Create the control dir (and the lock dir) of ``name``; return the control dir.

        Refuses a control dir that is a symlink (UnsafePathError), and a name the file system
        finds too long (InvalidStarterError) before anything is made.
        """
        from xprocess.errors import InvalidStarterError

        controldir = self.controldir(name)
        refuse_symlink(controldir, "control dir", name)
        too_long = InvalidStarterError(
            f"process name {name[:40]!r}... is too long for the file system of {self.root}: "
            "use a shorter name",
            name=name,
        )
        with contextlib.suppress(OSError):
            where = self.root if self.root.is_dir() else self.root.parent
            if len(os.fsencode(name)) + len(".lock") > os.pathconf(where, "PC_NAME_MAX"):
                raise too_long
        try:
            self.layout.locks.mkdir(parents=True, exist_ok=True)
            controldir.mkdir(exist_ok=True)
        except OSError as exc:
            if exc.errno == errno.ENAMETOOLONG:
                raise too_long from exc
            raise
        refuse_symlink(controldir, "control dir", name)
        return controldir

    def home(self) -> Home:
        """The identity of this store's root (see ``xprocess.origin``), read once it exists."""
        if self._home is None or not self._home.inode:
            self._home = home_of(self.root)
        return self._home

    def read(self, name: str) -> ProcessRecord | None:
        """The record of ``name``, or None when there is none, it cannot be read, or it is
        foreign (written for another records root: see ``foreign``)."""
        record = self._parse(name)
        if record is None or self.origin_of(record) is not None:
            return None
        return record

    def foreign(self, name: str) -> tuple[ProcessRecord, str] | None:
        """The record of ``name`` and the records root it was written for, when that is not
        this one (a copy of another project's record); else None. Nothing it names is this
        root's to reuse or signal."""
        record = self._parse(name)
        origin = self.origin_of(record) if record is not None else None
        return (record, origin) if record is not None and origin is not None else None

    def moved(self, name: str) -> ProcessRecord | None:
        """The record of ``name`` when it was written before this project was moved here (see
        ``xprocess.origin``): its process is this project's, to stop and not to reuse."""
        record = self._parse(name)
        if record is None or self.origin_of(record) is None:
            return None
        moved = moved_here(record.root, record.root_inode, record.root_device, self.home())
        return record if moved else None

    def origin_of(self, record: ProcessRecord) -> str | None:
        """None when ``record`` was written for this root, else the root it was written for."""
        return foreign_origin(record.root, record.root_inode, record.logpath, self.home())

    def _parse(self, name: str) -> ProcessRecord | None:
        path = self.record_path(name)
        text = read_or_warn(path, f"the record of {name!r}")
        if text is None:
            return None
        try:
            record = ProcessRecord.from_json(text)
            if record.name != name:
                raise ValueError(f"it names another process, {record.name!r}")
            return record
        except (ValueError, TypeError) as exc:
            what = "empty" if not text.strip() else f"corrupt ({exc})"
            warn(
                f"the record of {name!r} at {path} is {what}; treating it as 'no process'. "
                "If a process of that name still runs, stop it by hand; the next start "
                "replaces the record.",
            )
            return None

    def read_unchanged(self, name: str) -> ProcessRecord | None:
        """The record of ``name`` like ``read``, without parsing the file again while it is the
        one read last (same inode, size, times): reuse asks at every ``ensure``.

        The record returned may be the one returned before: callers must not change it.
        """
        path = self._paths.get(name)
        if path is None:
            path = self._paths[name] = str(self.record_path(name))
        try:
            info = os.lstat(path)
        except OSError:
            return None
        # What read_or_warn refuses (a link, not a file, another user's) is read, and refused,
        # there; a file replaced by atomic_write has a new inode.
        key = (info.st_ino, info.st_dev, info.st_size, info.st_mtime_ns, info.st_ctime_ns)
        last = self._last.get(name)
        if last is not None and last[0] == key:
            return last[1]
        record = self.read(name)
        if record is not None and stat.S_ISREG(info.st_mode) and info.st_uid == os.geteuid():
            self._last[name] = (key, record)
        return record

    def write(self, record: ProcessRecord) -> None:
        """Replace the record of ``record.name`` atomically, bound to this root."""
        home = self.home()
        record.root, record.root_inode, record.root_device = home.path, home.inode, home.device
        atomic_write(self.record_path(record.name), record.to_json())

    def names(self) -> list[str]:
        """Names that have a record, sorted."""
        return self.layout.process_names()

    def records(self) -> Iterator[tuple[str, ProcessRecord | None]]:
        for name in self.names():
            yield name, self.read(name)
