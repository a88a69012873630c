"""Shared values: computed once per test run for every xdist worker, cleaned up once at its end.

A value lives in a small JSON record, like a process does (see ``layout.py``): one per run
(cleaned up when it ends), or one kept across runs (``key=`` given). The record and its store
are in :mod:`xprocess.value_records`; this module computes, shares and cleans up the values.

The worker that takes the value's lock first computes it and writes the record; the others wait
for the lock and read it. The cleanup runs in the process that outlives every worker (the xdist
controller, or the only process without xdist), which finds the cleanup function again by its
module and qualified name: so a cleanup must be a named function defined at module level.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import os
import sys
import time
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from xprocess.errors import (
    CleanupWarning,
    InvalidStarterError,
    SharedValueError,
    rebuild_exact,
)
from xprocess.locking import NameLock
from xprocess.records import FAILED, READY, RecordStore, validate_name
from xprocess.value_records import ValueRecord, ValueStore

# ValueRecord and ValueStore are re-exported: they were always imported from here.
__all__ = [
    "ValueRecord",
    "ValueStore",
    "cleanup_run_values",
    "clear_values",
    "process_gone",
    "shared_value",
]

DEFAULT_TIMEOUT = 300.0


def _reference(name: str, role: str, function: Callable[..., object]) -> dict[str, str]:
    """How the end-of-run step finds ``function`` again: its module, file and qualified name."""
    qualname = getattr(function, "__qualname__", "")
    module = getattr(function, "__module__", "")
    try:
        filename = inspect.getfile(function)
    except TypeError:
        filename = ""
    if not qualname or "<" in qualname or not module or not filename:
        raise InvalidStarterError(
            f"shared value {name!r}: {role} {function!r} must be a named function defined at "
            "module level (in conftest.py or a module), not a lambda or a nested function: "
            "it runs after the last worker finished, in a process that finds it by name",
            name=name,
        )
    return {"module": module, "qualname": qualname, "file": filename}


def resolve_function(reference: dict[str, str]) -> Callable[..., Any]:
    """Find a function from its reference, importing its file if it is not loaded."""
    target = os.path.realpath(reference["file"])
    module = sys.modules.get(reference["module"])
    if module is None or os.path.realpath(getattr(module, "__file__", "") or "") != target:
        module = next(
            (
                m
                for m in list(sys.modules.values())
                if os.path.realpath(getattr(m, "__file__", None) or "/-") == target
            ),
            None,
        )
    if module is None:
        spec = importlib.util.spec_from_file_location(
            f"_xprocess_cleanup_{abs(hash(target))}", target
        )
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot import {target}")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    obj: Any = module
    for part in reference["qualname"].split("."):
        obj = getattr(obj, part)
    if not callable(obj):
        raise TypeError(f"{reference['qualname']} in {target} is not callable")
    return obj  # type: ignore[no-any-return]


def _rebuild(record: ValueRecord) -> Exception:
    """The error the computation raised in another worker: its own class when it can be
    imported here, else its nearest builtin, else a SharedValueError naming it."""
    error = rebuild_exact(record.error_type, record.error_message)
    if error is not None:
        return error
    shown = record.error_type.split("(", 1)[0].replace(":", ".")
    return SharedValueError(
        f"computing shared value {record.name!r} raised {shown}: {record.error_message}",
        name=record.name,
    )


def shared_value(
    root: Path,
    run_id: str,
    name: str,
    compute: Callable[[], Any],
    *,
    cleanup: Callable[[Any], object] | None = None,
    key: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    dumps: Callable[[Any], str] | None = None,
    loads: Callable[[str], Any] | None = None,
    worker: str = "",
    process: str | None = None,
) -> Any:
    """Return the value ``name`` of this run, computing it if no worker has yet.

    See ``XProcess.shared`` for the meaning of the arguments.
    """
    __tracebackhide__ = True
    validate_name(name)
    if not callable(compute):
        raise InvalidStarterError(
            f"shared value {name!r}: compute must be a function returning the value, "
            f"got {compute!r}",
            name=name,
        )
    reference = _reference(name, "cleanup", cleanup) if cleanup is not None else None
    loads_reference = (
        _reference(name, "loads", loads) if loads is not None and cleanup is not None else None
    )
    if key is not None and not isinstance(key, str):
        raise InvalidStarterError(
            f"shared value {name!r}: key must be a string (e.g. a hash of the inputs), got {key!r}",
            name=name,
        )
    if process is not None:
        validate_name(process)
    dumps = dumps or json.dumps
    loads = loads or json.loads
    store = ValueStore(root)
    run_path = store.run_path(name, run_id)
    store.lock_path(name).parent.mkdir(parents=True, exist_ok=True)
    with NameLock(store.lock_path(name), name, timeout, what="shared value"):
        instance = _instance_of(root, name, process) if process is not None else None
        record = store.read(run_path)
        if record is not None and record.state == FAILED:
            raise _rebuild(record)
        if record is not None and record.process == instance:
            return loads(record.payload)
        kept_path = store.kept_path(name)
        if key is not None:
            kept = store.read(kept_path)
            if kept is not None and kept.state == READY and kept.process != instance:
                kept = None  # its process was restarted: the value died with the old instance
            if kept is not None and kept.key == key:
                return loads(kept.payload)
            if kept is not None and cleanup is not None:
                _clean_up_stale(name, kept, cleanup, loads)
            kept_path.unlink(missing_ok=True)
        try:
            value = compute()
            try:
                payload = dumps(value)
            except (TypeError, ValueError) as exc:
                raise TypeError(
                    f"shared value {name!r}: a {type(value).__name__} cannot be stored "
                    f"({exc}); return JSON data (str, number, bool, None, list, dict) or pass "
                    "dumps= and loads= that turn it into a string and back",
                ) from exc
            if not isinstance(payload, str):
                raise TypeError(
                    f"shared value {name!r}: dumps must return a str, got {type(payload).__name__}"
                )
        except Exception as exc:
            store.write(run_path, ValueRecord.failed(name, run_id, exc, worker))
            raise
        record = ValueRecord(
            name=name,
            run_id=run_id,
            payload=payload,
            key=key,
            cleanup=reference,
            loads=loads_reference,
            computed_at=time.time(),
            computed_by=worker,
            process=instance,
        )
        store.write(kept_path if key is not None else run_path, record)
        return loads(payload)


def _instance_of(root: Path, name: str, process: str) -> dict[str, Any]:
    """The running instance of ``process`` that the value ``name`` is tied to."""
    record = RecordStore(root).read(process)
    if record is None or record.state != READY or not record.is_alive():
        raise SharedValueError(
            f"shared value {name!r} is tied to the process {process!r}, which is not running; "
            f"start it first (xprocess.ensure({process!r}, ...)) in the fixture that computes "
            "the value",
            name=name,
        )
    return {"name": process, "pid": record.pid, "create_time": record.create_time}


def process_gone(root: Path, record: ValueRecord) -> bool:
    """Whether ``record`` is tied to a process instance that no longer runs.

    Such a value died with its process (a database in a stopped server): its cleanup would only
    fail to reach it, so it is forgotten without calling into it.
    """
    tied = record.process
    if tied is None:
        return False
    name = tied.get("name")
    if not isinstance(name, str):
        return True
    running = RecordStore(root).read(name)
    return (
        running is None
        or running.pid != tied.get("pid")
        or running.create_time != tied.get("create_time")
        or not running.is_alive()
    )


def _gone_note(record: ValueRecord) -> str:
    assert record.process is not None
    return f"its process {record.process.get('name')} is gone, nothing to clean up"


def _clean_up_stale(
    name: str, stale: ValueRecord, cleanup: Callable[[Any], object], loads: Callable[[str], Any]
) -> None:
    """Run the cleanup of a kept value whose key changed; a failure is reported, not raised.

    The new value is computed anyway: a stale value that cannot be cleaned up (its server is
    gone, say) must not block every later run.
    """
    try:
        cleanup(loads(stale.payload))
    except KeyboardInterrupt:
        raise
    except BaseException as exc:
        details = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        warnings.warn(
            CleanupWarning(
                f"shared value {name!r}: the cleanup of its stale value (key {stale.key!r}, "
                f"computed {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(stale.computed_at))}"
                f") raised {type(exc).__name__}: {exc}; the new value is computed anyway.\n"
                f"{details}"
            ),
            stacklevel=3,
        )


def cleanup_run_values(root: Path, run_id: str, report: Callable[[str], None]) -> None:
    """Run the cleanup of each value of run ``run_id``, once, and forget the value.

    A cleanup that cannot be found or raises is reported and left on record, where ``--xshow``
    shows it and ``--xkill`` tries it again.
    """
    store = ValueStore(root)
    for path, record in store.all(run_id):
        if (
            record is None
            or record.state != READY
            or record.cleanup is None
            or process_gone(root, record)
        ):
            path.unlink(missing_ok=True)
            continue
        error = _run_cleanup(record)
        if error:
            record.cleanup_error = error
            store.write(path, record)
            report(f"xprocess: cleanup of shared value {record.name!r} failed: {error}")
        else:
            path.unlink(missing_ok=True)


def _run_cleanup(record: ValueRecord) -> str:
    assert record.cleanup is not None
    try:
        loads = resolve_function(record.loads) if record.loads else json.loads
        resolve_function(record.cleanup)(loads(record.payload))
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # pytest.fail() and sys.exit() too: report, never crash the run
        where = f"{record.cleanup.get('qualname')} in {record.cleanup.get('file')}"
        return f"{type(exc).__name__}: {exc} ({where})"
    return ""


def describe_values(root: Path) -> list[str]:
    """One line per recorded value, for --xshow."""
    lines = []
    store = ValueStore(root)
    for path, record in store.all():
        origin = store.foreign(path) if record is None else None
        if origin is not None:
            lines.append(
                f"- {path.parent.name} VALUE FOREIGN copied from {origin}: neither used nor "
                "cleaned up here, computed anew"
            )
            continue
        if record is None:
            lines.append(f"- {path.parent.name} VALUE unreadable record {path}")
            continue
        notes = [f"run {record.run_id[:8]}"]
        if record.process is not None:
            notes.append(f"tied to {record.process.get('name')} pid {record.process.get('pid')}")
            if process_gone(root, record):
                notes.append("which is gone")
        if record.key is not None:
            notes.append(f"kept, key {record.key[:16]}")
        if record.cleanup_error:
            notes.append(f"cleanup failed: {record.cleanup_error}")
        elif record.cleanup is not None and record.key is None:
            notes.append("cleanup pending")
        state = "VALUE" if record.state == READY else "VALUE FAILED"
        lines.append(f"- {record.name} {state} ({', '.join(notes)})")
    return lines


def clear_values(root: Path, write: Callable[[str], None]) -> int:
    """Run what cleanups can be run and forget every recorded value; for --xkill."""
    status = 0
    for path, record in ValueStore(root).all():
        name = record.name if record is not None else path.parent.name
        if record is not None and record.cleanup is not None and process_gone(root, record):
            write(f"- {name} VALUE CLEARED ({_gone_note(record)})")
        elif record is not None and record.state == READY and record.cleanup is not None:
            error = _run_cleanup(record)
            if error:
                write(f"- {name} VALUE CLEARED, cleanup failed: {error}")
                status = 1
            else:
                write(f"- {name} VALUE CLEANED UP")
        else:
            write(f"- {name} VALUE CLEARED")
        path.unlink(missing_ok=True)
    return status
