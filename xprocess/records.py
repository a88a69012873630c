"""Records on disk: one JSON file per managed process, written atomically.

Layout under the records root (``.pytest_cache/d/.xprocess`` by default)::

    <root>/<name>/record.json   what is known of the process (see ProcessRecord)
    <root>/<name>/xprocess.log  everything the process wrote, across starts
    <root>/<name>/              the process's working directory ("control dir")
    <root>/.locks/<name>.lock   held while the process is being checked or started

A record is replaced with ``os.replace`` so a reader sees the old one or the new one, never a
mix. A record that is missing, empty or unreadable reads as "no process" with a warning.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil

from xprocess.liveness import find_process, is_alive

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

RECORD_FILE = "record.json"
LOG_FILE = "xprocess.log"
LOCKS_DIR = ".locks"
_FORBIDDEN_IN_NAME = ("/", "\\", "\0")


class RecordWarning(UserWarning):
    """A record on disk could not be read and was treated as absent."""


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
    """What xprocess knows of one managed process.

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
    leads_session: bool = False

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
    """The records root: where each named process keeps its record, log and working directory."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def controldir(self, name: str) -> Path:
        return self.root / name

    def record_path(self, name: str) -> Path:
        return self.root / name / RECORD_FILE

    def log_path(self, name: str) -> Path:
        return self.root / name / LOG_FILE

    def lock_path(self, name: str) -> Path:
        return self.root / LOCKS_DIR / f"{name}.lock"

    def ensure_dirs(self, name: str) -> Path:
        """Create the control dir (and the lock dir) of ``name``; return the control dir."""
        (self.root / LOCKS_DIR).mkdir(parents=True, exist_ok=True)
        controldir = self.controldir(name)
        controldir.mkdir(exist_ok=True)
        return controldir

    def read(self, name: str) -> ProcessRecord | None:
        """The record of ``name``, or None when there is none or it cannot be read."""
        path = self.record_path(name)
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except FileNotFoundError:
            return None
        except OSError as exc:
            _warn(f"cannot read the record of {name!r} at {path}: {exc}; treating it as absent")
            return None
        try:
            return ProcessRecord.from_json(text)
        except (ValueError, TypeError) as exc:
            what = "empty" if not text.strip() else f"corrupt ({exc})"
            _warn(
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
        try:
            entries = list(self.root.iterdir())
        except FileNotFoundError:
            return []
        return sorted(
            e.name for e in entries if not e.name.startswith(".") and (e / RECORD_FILE).exists()
        )

    def records(self) -> Iterator[tuple[str, ProcessRecord | None]]:
        for name in self.names():
            yield name, self.read(name)


def atomic_write(path: Path, text: str) -> None:
    """Replace ``path`` with ``text``: readers see the old content or the new, never a part."""
    fd, tmp = tempfile.mkstemp(prefix=".record-", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _warn(message: str) -> None:
    warnings.warn(RecordWarning(message), stacklevel=3)
