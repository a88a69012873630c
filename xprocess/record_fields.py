"""The fields of a record on disk and the shape each must have (see ``records.ProcessRecord``).

A record is read only if every field it has is of the right shape: a record written by hand, by
another tool or half by a crash is refused as a whole, naming the first field that is wrong.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["CHECKS", "short"]


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
}
