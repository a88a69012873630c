"""The record of a shared value on disk: its fields, the tolerant read, the write, the store.

A record is a small JSON file under the records root (see ``layout.py``), written atomically
with the root it was written for, so a record copied with another project's cache is known as
foreign (see ``xprocess.origin``). :mod:`xprocess.values` computes and cleans up the values.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from xprocess.errors import type_name
from xprocess.layout import Layout, atomic_write, read_or_warn, warn
from xprocess.origin import Home, foreign_origin, home_of
from xprocess.records import FAILED, READY

__all__ = ["ValueRecord", "ValueStore"]


@dataclasses.dataclass
class ValueRecord:
    """A computed value (serialised), or the error computing it raised."""

    name: str
    run_id: str
    state: str = READY
    payload: str = ""
    key: str | None = None
    cleanup: dict[str, str] | None = None
    loads: dict[str, str] | None = None
    computed_at: float = 0.0
    computed_by: str = ""
    error_type: str = ""
    error_message: str = ""
    cleanup_error: str = ""
    # The process instance the value belongs to (``process=``): its name, pid and create time.
    process: dict[str, Any] | None = None
    # The records root it was written for (see ``xprocess.origin``): a value copied from another
    # project's root is neither used nor cleaned up here (its cleanup would act on that
    # project's server).
    root: str = ""
    root_inode: int = 0

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=1, sort_keys=True)

    @classmethod
    def failed(cls, name: str, run_id: str, error: BaseException, worker: str) -> ValueRecord:
        """The record of a computation of ``name`` that raised ``error``."""
        return cls(
            name=name,
            run_id=run_id,
            state=FAILED,
            error_type=type_name(error),
            error_message=str(error),
            computed_at=time.time(),
            computed_by=worker,
        )


def _is_reference(value: object) -> bool:
    return value is None or (
        isinstance(value, dict) and all(isinstance(v, str) for v in value.values())
    )


_VALUE_CHECKS: dict[str, Callable[[object], bool]] = {
    "name": lambda v: isinstance(v, str),
    "run_id": lambda v: isinstance(v, str),
    "state": lambda v: isinstance(v, str),
    "payload": lambda v: isinstance(v, str),
    "key": lambda v: v is None or isinstance(v, str),
    "cleanup": _is_reference,
    "loads": _is_reference,
    "computed_at": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "computed_by": lambda v: isinstance(v, str),
    "error_type": lambda v: isinstance(v, str),
    "error_message": lambda v: isinstance(v, str),
    "cleanup_error": lambda v: isinstance(v, str),
    "process": lambda v: v is None or isinstance(v, dict),
    "root": lambda v: isinstance(v, str),
    "root_inode": lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0,
}


class ValueStore:
    """The shared values under a records root."""

    def __init__(self, root: Path) -> None:
        self.layout = Layout(root)
        self._home_now: Home | None = None

    def run_path(self, name: str, run_id: str) -> Path:
        return self.layout.value_of_run(name, run_id)

    def kept_path(self, name: str) -> Path:
        return self.layout.kept_value(name)

    def lock_path(self, name: str) -> Path:
        return self.layout.value_lock(name)

    def read(self, path: Path) -> ValueRecord | None:
        """The value record at ``path``; None (with a RecordWarning if it is unreadable) when
        there is none, or when it is foreign (see ``foreign``)."""
        record = self._parse(path)
        return record if record is not None and self._origin(record) is None else None

    def foreign(self, path: Path) -> str | None:
        """The records root the value record at ``path`` was written for, when it is not this
        one (copied with another project's cache); else None."""
        record = self._parse(path)
        return self._origin(record) if record is not None else None

    def _origin(self, record: ValueRecord) -> str | None:
        if not record.root:
            return None  # older than the field: nothing tells where it was written
        return foreign_origin(record.root, record.root_inode, "", self._home())

    def _home(self) -> Home:
        if self._home_now is None or not self._home_now.inode:
            self._home_now = home_of(self.layout.root)
        return self._home_now

    def _parse(self, path: Path) -> ValueRecord | None:
        text = read_or_warn(path, "a shared value's record")
        if text is None:
            return None
        try:
            raw = json.loads(text)
            if not isinstance(raw, dict):
                raise ValueError("a record must be a JSON object")
            wrong = [k for k, v in raw.items() if k in _VALUE_CHECKS and not _VALUE_CHECKS[k](v)]
            if wrong:
                raise ValueError(f"field {wrong[0]!r} has a wrong value")
            return ValueRecord(**{k: v for k, v in raw.items() if k in _VALUE_CHECKS})
        except (ValueError, TypeError, RecursionError) as exc:
            warn(f"the shared value's record at {path} is unreadable ({exc}); computing it anew")
            return None

    def write(self, path: Path, record: ValueRecord) -> None:
        home = self._home()
        record.root, record.root_inode = home.path, home.inode
        atomic_write(path, record.to_json())

    def all(self, run_id: str | None = None) -> Iterator[tuple[Path, ValueRecord | None]]:
        for path in self.layout.value_files(run_id):
            yield path, self.read(path)
