"""``--xshow`` and ``--xkill``: list and stop every recorded process, outside any test run."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from pathlib import Path

from xprocess.manager import XProcessInfo
from xprocess.records import READY, ProcessRecord, RecordStore
from xprocess.termination import stop_record
from xprocess.values import clear_values, describe_values

__all__ = ["kill", "show"]

Write = Callable[[str], None]

_STATUS = {1: "TERMINATED", 0: "NO PROCESS FOUND", -1: "FAILED TO TERMINATE"}


def _uptime(record: ProcessRecord, now: float) -> str:
    seconds = max(0, int(now - record.create_time))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}"


def describe(info: XProcessInfo, now: float) -> str:
    """One line: pid, name, LIVE or DEAD, uptime, log path, and which run started it."""
    record = info.record
    if record is None:
        return f"- {info.name} DEAD - {info.logpath} (record missing or unreadable)"
    live = info.isrunning()
    notes = [f"run {record.run_id[:8]}"]
    if record.state != READY:
        notes.append(record.state)
    if record.terminate_at_end:
        notes.append("stops at end of run")
    uptime = _uptime(record, now) if live else "-"
    status = "LIVE" if live else "DEAD"
    pid = info.pid if info.pid is not None else "-"
    return f"{pid} {info.name} {status} {uptime} {info.logpath} ({', '.join(notes)})"


def _infos(roots: Iterable[Path], names: list[str] | None) -> list[XProcessInfo]:
    infos = []
    for root in roots:
        store = RecordStore(root)
        for name in store.names():
            if names is None or name in names:
                infos.append(XProcessInfo(root, name))
    return infos


def show(roots: Iterable[Path], write: Write) -> int:
    """Print one line per recorded process; always returns 0."""
    roots = list(roots)
    infos = _infos(roots, None)
    values = [line for root in roots for line in describe_values(root)]
    if not infos and not values:
        write("no processes recorded")
    now = time.time()
    for info in infos:
        write(describe(info, now))
    for line in values:
        write(line)
    return 0


def kill(roots: Iterable[Path], write: Write, names: list[str] | None = None) -> int:
    """Terminate recorded process trees (all, or those in ``names``).

    Without ``names``, shared values are cleared too (their cleanup run where it can be).
    Returns 0 when each is gone, 1 when one could not be terminated or a name has no record.
    """
    roots = list(roots)
    infos = _infos(roots, names)
    status = 0
    if names is not None:
        for missing in sorted(set(names) - {info.name for info in infos}):
            write(f"- {missing} NO RECORD (nothing of that name was started here)")
            status = 1
    elif not infos and not any(describe_values(root) for root in roots):
        write("no processes recorded")
    for info in infos:
        if info.record is None:
            write(f"- {info.name} UNREADABLE RECORD (nothing signalled; see the warning above)")
            status = 1
            continue
        notes: list[str] = []
        result = stop_record(info.record, report=notes.append)
        label = "NOT SIGNALLED" if notes and result <= 0 else _STATUS[result]
        write(f"{info.pid if info.pid is not None else '-'} {info.name} {label}")
        for note in notes:
            write(f"    {note}")
        if result < 0:
            status = 1
    if names is None:
        for root in roots:
            status = clear_values(root, write) or status
    return status
