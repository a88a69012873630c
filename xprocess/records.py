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
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil

from xprocess.errors import type_name
from xprocess.layout import Layout, RecordWarning, atomic_write, read_or_warn, warn
from xprocess.liveness import BOOT_ID, find_process, identify, is_alive
from xprocess.tokens import allowed_uids, carriers, process_uid

if TYPE_CHECKING:
    from xprocess.runs import Run
    from xprocess.starter import LaunchPlan

__all__ = [
    "FAILED",
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

_FORBIDDEN_IN_NAME = ("/", "\\", "\0")
# A name becomes "<name>.lock" in the locks dir; most file systems take 255 bytes per name.
MAX_NAME_BYTES = 255 - len(".lock")


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


def validate_name(name: object) -> str:
    """Return ``name`` if it can name a process directory, else raise ``ValueError``."""
    from xprocess.errors import InvalidStarterError

    if not isinstance(name, str) or not name:
        raise InvalidStarterError(
            f"process name must be a non-empty string, got {name!r}; "
            "pass a short name such as 'myserver'",
        )
    bad = [c for c in _FORBIDDEN_IN_NAME if c in name]
    if bad or name in (".", "..") or name.startswith(".") or ".." in name:
        raise InvalidStarterError(
            f"process name {name!r} cannot be used: it must not start with '.', contain '..', "
            "'/', '\\' or NUL, since it names a directory inside the records root; "
            "use letters, digits, '-' or '_'",
            name=name,
        )
    size = len(os.fsencode(name))
    if size > MAX_NAME_BYTES:
        raise InvalidStarterError(
            f"process name {name[:40]!r}... is {size} bytes long; it names a directory and a "
            f"lock file, so it may have at most {MAX_NAME_BYTES} bytes: use a shorter name",
            name=name,
        )
    return name


@dataclasses.dataclass
class ProcessRecord:
    """What xprocess knows of one managed process, and how that changes::

        (no record) --starting()--> STARTING --ready()----> READY
                                        |
                                        +----failed()---> FAILED
        (no record) --not_started()-----------------------> FAILED

    A start writes a STARTING record as soon as the process is spawned, so a caller that dies
    mid-start leaves a record the next caller recognises (and stops) instead of an unknown
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
    leads_session: bool = False
    token: str = ""
    uid: int = -1
    started_by_time: float = 0.0

    @classmethod
    def starting(
        cls,
        plan: LaunchPlan,
        pid: int,
        *,
        cwd: Path,
        logpath: Path,
        offset: int,
        run: Run,
        holder: dict[str, Any] | None,
        token: str,
    ) -> ProcessRecord:
        """The record of ``plan``'s process, just spawned as ``pid`` (carrying ``token``) by
        this process."""
        identity = identify(pid)  # None only if it is already gone; readiness says why
        stops = plan.terminate_at_end or plan.terminate_on_interrupt
        return cls(
            name=plan.name,
            pid=pid,
            create_time=identity.create_time if identity is not None else time.time(),
            start_since_boot=identity.since_boot if identity is not None else None,
            boot_id=BOOT_ID,
            leads_session=bool(identity is not None and identity.leads_session),
            started_by=os.getpid(),
            started_by_time=_own_start_time(),
            argv=plan.argv,
            cwd=str(cwd),
            logpath=str(logpath),
            log_offset=offset,
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
            uid=process_uid(pid),
        )

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

        While the process that started it runs (and may yet hand the record over to the daemon
        a launcher left when it exited 0 right after its ready line), processes carrying its
        token count too. After that only the recorded process does: a server that crashed
        leaving a child behind is dead, not kept alive by the child.
        """
        pid_alive = is_alive(
            self.pid,
            self.create_time,
            self.start_since_boot,
            self.boot_id,
            ignore_zombies=ignore_zombies,
            leads_session=self.leads_session,
        )
        if pid_alive or not self.token or not self._starter_runs():
            return pid_alive
        return bool(carriers(self.token, allowed_uids([self.uid])))

    def _starter_runs(self) -> bool:
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
            check = _CHECKS.get(field)
            if check is not None and not check(value):
                raise ValueError(f"field {field!r} has a wrong value {_short(value)}")
        missing = sorted(_REQUIRED - raw.keys())
        if missing:
            raise ValueError(f"missing fields {', '.join(missing)}")
        return cls(**{k: v for k, v in raw.items() if k in _CHECKS})


def _short(value: object) -> str:
    text = repr(value) if not isinstance(value, (dict, list)) else type(value).__name__
    return text if len(text) <= 60 else text[:57] + "..."


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_str(value: object) -> bool:
    return isinstance(value, str)


def _is_user(value: object) -> bool:
    return (
        isinstance(value, dict)
        and _is_str(value.get("run"))
        and _is_int(value.get("pid"))
        and _is_number(value.get("create_time"))
        and (value.get("since_boot") is None or _is_number(value.get("since_boot")))
        and _is_str(value.get("boot_id", ""))
    )


_CHECKS: dict[str, Callable[[object], bool]] = {
    "name": _is_str,
    "pid": _is_int,
    "create_time": _is_number,
    "argv": lambda v: isinstance(v, list) and all(map(_is_str, v)),
    "cwd": _is_str,
    "logpath": _is_str,
    "log_offset": lambda v: _is_int(v) and v >= 0,  # type: ignore[operator]
    "started_at": _is_number,
    "state": lambda v: v in (STARTING, READY, FAILED),
    "run_id": _is_str,
    "starter": _is_str,
    "terminate_at_end": lambda v: isinstance(v, bool),
    "terminate_on_interrupt": lambda v: isinstance(v, bool),
    "users": lambda v: isinstance(v, list) and all(map(_is_user, v)),
    "data": lambda v: isinstance(v, dict) and all(map(_is_str, v)),
    "error_type": _is_str,
    "error_message": _is_str,
    "start_since_boot": lambda v: v is None or _is_number(v),
    "boot_id": _is_str,
    "started_by": _is_int,
    "token": lambda v: _is_str(v) and len(v) <= 128,  # type: ignore[arg-type]
    "uid": _is_int,
    "started_by_time": _is_number,
    "replayed_to": lambda v: isinstance(v, list) and all(map(_is_int, v)),
    "holders": lambda v: isinstance(v, list) and all(map(_is_user, v)),
    "released_in": _is_str,
    "fingerprint": _is_str,
    "leads_session": lambda v: isinstance(v, bool),
}
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

    def read(self, name: str) -> ProcessRecord | None:
        """The record of ``name``, or None when there is none or it cannot be read."""
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

    def write(self, record: ProcessRecord) -> None:
        """Replace the record of ``record.name`` atomically."""
        atomic_write(self.record_path(record.name), record.to_json())

    def names(self) -> list[str]:
        """Names that have a record, sorted."""
        return self.layout.process_names()

    def records(self) -> Iterator[tuple[str, ProcessRecord | None]]:
        for name in self.names():
            yield name, self.read(name)
