"""Records on disk: one JSON file per managed process, and the states a record goes through.

Where the files live is ``layout.py``'s business. A record is replaced atomically, so a reader
sees the old one or the new one, never a mix; a record that is missing, empty or unreadable reads
as "no process" (an empty or unreadable one with a ``RecordWarning``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil

from xprocess.layout import Layout, RecordWarning, atomic_write, read_or_warn, warn
from xprocess.liveness import BOOT_ID, find_process, identify, is_alive

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
    "validate_name",
]

STARTING = "starting"
READY = "ready"
FAILED = "failed"

_FORBIDDEN_IN_NAME = ("/", "\\", "\0")


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
    ) -> ProcessRecord:
        """The record of ``plan``'s process, just spawned as ``pid`` by this process."""
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
        self.error_type = type(error).__name__
        self.error_message = str(error) or repr(error)
        self.replayed_to = []

    def is_alive(self, *, ignore_zombies: bool = True) -> bool:
        """Whether the recorded process still runs (not a recycled pid)."""
        return is_alive(
            self.pid,
            self.create_time,
            self.start_since_boot,
            self.boot_id,
            ignore_zombies=ignore_zombies,
            leads_session=self.leads_session,
        )

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
        raw = json.loads(text)
        if not isinstance(raw, dict):
            raise ValueError("a record must be a JSON object")
        record = cls(**{k: v for k, v in raw.items() if k in _FIELDS})
        if not isinstance(record.pid, int) or not isinstance(record.create_time, (int, float)):
            raise ValueError("pid and create_time must be numbers")
        return record


_FIELDS = frozenset(f.name for f in dataclasses.fields(ProcessRecord))


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
        """Create the control dir (and the lock dir) of ``name``; return the control dir."""
        self.layout.locks.mkdir(parents=True, exist_ok=True)
        controldir = self.controldir(name)
        controldir.mkdir(exist_ok=True)
        return controldir

    def read(self, name: str) -> ProcessRecord | None:
        """The record of ``name``, or None when there is none or it cannot be read."""
        path = self.record_path(name)
        text = read_or_warn(path, f"the record of {name!r}")
        if text is None:
            return None
        try:
            return ProcessRecord.from_json(text)
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
