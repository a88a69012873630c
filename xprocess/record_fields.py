"""The fields of a record on disk and the shape each must have (see ``records.ProcessRecord``).

A record is read only if every field it has is of the right shape: a record written by hand, by
another tool or half by a crash is refused as a whole, naming the first field that is wrong.
"""

from __future__ import annotations

import os
from collections.abc import Callable

__all__ = ["CHECKS", "MAX_NAME_BYTES", "short", "validate_name"]

_FORBIDDEN_IN_NAME = ("/", "\\", "\0")
# A name becomes "<name>.lock" in the locks dir; most file systems take 255 bytes per name.
MAX_NAME_BYTES = 255 - len(".lock")


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


def short(value: object) -> str:
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


CHECKS: dict[str, Callable[[object], bool]] = {
    "name": _is_str,
    "pid": _is_int,
    "create_time": _is_number,
    "argv": lambda v: isinstance(v, list) and all(map(_is_str, v)),
    "cwd": _is_str,
    "logpath": _is_str,
    "log_offset": lambda v: _is_int(v) and v >= 0,  # type: ignore[operator]
    "started_at": _is_number,
    "state": lambda v: v in ("starting", "ready", "failed"),  # records.STARTING, READY, FAILED
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
    "root": _is_str,
    "root_inode": lambda v: _is_int(v) and v >= 0,  # type: ignore[operator]
    "root_device": lambda v: _is_int(v) and v >= 0,  # type: ignore[operator]
}
