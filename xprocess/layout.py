"""The on-disk layout under a records root: every path, the atomic write and the tolerant read.

Layout under the records root (``.pytest_cache/d/.xprocess`` by default)::

    <root>/<name>/                        the control dir: the process's working directory
    <root>/<name>/record.json             what is known of the process (records.ProcessRecord)
    <root>/<name>/xprocess.log            everything the process wrote, across starts
    <root>/<name>/.record-kept            a second name of an earlier record (see keep_blocks)
    <root>/.locks/<name>.lock             held while a process is checked, started or stopped
    <root>/.locks/values/<name>.lock      held while a shared value is computed
    <root>/.locks/leases/<name>/<n>.lock  held by the worker that leases slot n of <name>
    <root>/.values/<name>/run-<run>.json  a shared value of one run (values.ValueRecord)
    <root>/.values/<name>/kept.json       a shared value kept across runs
    <root>/.runs/<run id>                 "this run used xprocess": its end has work to do
    <root>/.runs/<run id>.watchdog        the run has a watchdog (``<run id>.killed.log`` after)
    <root>/.cache/                        kept across runs by a server module (a pristine cluster)

Files are replaced with ``os.replace`` so a reader sees the old content or the new, never a mix.
Nothing is read through a symlink (``O_NOFOLLOW``), and a record another user wrote is not read.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import secrets
import stat
import warnings
from collections.abc import Iterator
from pathlib import Path

from xprocess.errors import UnsafePathError

__all__ = [
    "Layout",
    "RecordWarning",
    "atomic_write",
    "keep_blocks",
    "open_regular_file",
    "read_or_warn",
]

RECORD_FILE = "record.json"
# A second name of the record a start will replace when its process is ready (see keep_blocks).
KEPT_RECORD_FILE = ".record-kept"
LOG_FILE = "xprocess.log"
KEPT_FILE = "kept.json"
LOCKS_DIR = ".locks"
# Names of the temporary files atomic_write makes: ``.record-<pid>-<n>.tmp``.
_TEMPORARY = itertools.count(secrets.randbelow(1 << 30))
# Records are small; a bigger file is not one.
MAX_RECORD_BYTES = 4 << 20


class RecordWarning(UserWarning):
    """A record on disk could not be read and was treated as absent."""


class Layout:
    """Every path of the records root ``root``; nothing else builds one."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self.locks = self.root / LOCKS_DIR
        self.values = self.root / ".values"
        self.runs = self.root / ".runs"
        self.cache = self.root / ".cache"

    # Processes
    def controldir(self, name: str) -> Path:
        return self.root / name

    def record(self, name: str) -> Path:
        return self.root / name / RECORD_FILE

    def log(self, name: str) -> Path:
        return self.root / name / LOG_FILE

    def process_lock(self, name: str) -> Path:
        return self.locks / f"{name}.lock"

    def process_names(self) -> list[str]:
        """Names that have a record, sorted."""
        try:
            entries = list(self.root.iterdir())
        except OSError:
            return []
        return sorted(
            e.name
            for e in entries
            if not e.name.startswith(".") and os.path.lexists(e / RECORD_FILE)
        )

    def lease_lock(self, name: str, slot: int) -> Path:
        """Held by the one live worker that leases slot ``slot`` of process ``name``."""
        return self.locks / "leases" / name / f"{slot}.lock"

    # Shared values
    def value_of_run(self, name: str, run_id: str) -> Path:
        return self.values / name / f"run-{run_id}.json"

    def kept_value(self, name: str) -> Path:
        return self.values / name / KEPT_FILE

    def value_lock(self, name: str) -> Path:
        return self.locks / "values" / f"{name}.lock"

    def value_files(self, run_id: str | None = None) -> Iterator[Path]:
        """Every value record (of run ``run_id`` only, if given), sorted."""
        if not self.values.is_dir():
            return iter(())
        pattern = "*/*.json" if run_id is None else f"*/run-{run_id}.json"
        return iter(sorted(self.values.glob(pattern)))

    # Runs
    def run_marker(self, run_id: str) -> Path:
        """An empty file that says run ``run_id`` used the records under this root."""
        return self.runs / run_id

    def watchdog_flag(self, run_id: str) -> Path:
        """A file that says run ``run_id`` has a watchdog (made exclusively: one per run)."""
        return self.runs / f"{run_id}.watchdog"

    def killed_run_log(self, run_id: str) -> Path:
        """What the watchdog of run ``run_id`` did after the run was killed."""
        return self.runs / f"{run_id}.killed.log"


def atomic_write(path: Path, text: str) -> None:
    """Replace ``path`` with ``text``: readers see the old content or the new, never a part."""
    data = text.encode("utf-8")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd, tmp = _create_temporary(path, flags)
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = _create_temporary(path, flags)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _create_temporary(path: Path, flags: int) -> tuple[int, str]:
    """A new file beside ``path`` that no one else has open, and its name."""
    while True:
        tmp = os.path.join(path.parent, f".record-{os.getpid()}-{next(_TEMPORARY)}.tmp")
        try:
            return os.open(tmp, flags, 0o600), tmp
        except FileExistsError:  # left by a process killed mid-write, with our pid then
            continue


def keep_blocks(path: Path) -> None:
    """Give the file at ``path`` a second name (``.record-kept`` beside it), so that the next
    ``atomic_write`` of ``path`` does not free its blocks.

    On ext4, replacing a file whose last name goes frees its blocks, which waits on the journal:
    milliseconds on a busy disk, where the replace of a file still linked elsewhere takes
    microseconds. A start calls this before it waits for readiness, so the record that says
    "ready" is written fast; the previous kept name goes then, off that path.
    """
    kept = path.with_name(KEPT_RECORD_FILE)
    with contextlib.suppress(OSError):
        kept.unlink(missing_ok=True)
        os.link(path, kept, follow_symlinks=False)


def read_or_warn(path: Path, what: str, *, limit: int = MAX_RECORD_BYTES) -> str | None:
    """The text of the record at ``path``; None when there is none, or (with a RecordWarning)
    when it cannot be trusted: a symlink, not a regular file, written by another user, or larger
    than ``limit``. ``what`` names the record in the warning ("the record of 'db'")."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    except OSError as exc:
        why = "it is a symlink" if exc.errno == errno.ELOOP else str(exc)
        warn(f"cannot read {what} at {path}: {why}; treating it as absent")
        return None
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode):
            warn(f"{what} at {path} is not a file; treating it as absent")
            return None
        if info.st_uid != os.geteuid():
            warn(
                f"{what} at {path} belongs to uid {info.st_uid}, not to this user; xprocess acts "
                "only on records its own user wrote: treating it as absent"
            )
            return None
        data = f.read(min(info.st_size, limit) + 1)  # not a buffer of ``limit`` bytes
    if len(data) > limit:
        warn(f"{what} at {path} is larger than {limit} bytes; treating it as absent")
        return None
    return data.decode("utf-8", "replace")


def warn(message: str) -> None:
    warnings.warn(RecordWarning(message), stacklevel=3)


def open_regular_file(path: Path, flags: int, *, name: str, what: str, remedy: str) -> int:
    """``os.open(path, flags | O_NOFOLLOW | O_CLOEXEC)``, refusing a symlink or anything but a
    regular file with UnsafePathError ("``what`` of ``name``, ``path``, is ...; ``remedy``")."""
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnsafePathError(
                f"{what} of {name!r}, {path}, is a symlink (to {os.readlink(path)}); xprocess "
                f"does not open files through symlinks under its records root. {remedy}",
                name=name,
            ) from exc
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise UnsafePathError(
            f"{what} of {name!r}, {path}, is not a regular file. {remedy}", name=name
        )
    return fd
