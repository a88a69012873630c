"""``--xshow`` and ``--xkill``: list and stop every recorded process, outside any test run.

``--xshow`` prints a table, one line per recorded process::

    NAME         PID    STATUS  UPTIME   HELD BY       DATA        LOG
    http_server  7168   LIVE    0:00:41  -             port=40123  .pytest_cache/d/.xprocess/...

STATUS, HELD BY and DATA are what :mod:`xprocess.status` says of each record (its docstring
tells what each status means); ``full=True`` shows each record whole instead, one field a line.

``--xkill`` stops each recorded process, then forgets the record of each one that is gone (its
log and control dir stay), so DEAD records do not pile up.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from pathlib import Path

from xprocess.errors import StartupTimeoutError
from xprocess.layout import Layout
from xprocess.locking import NameLock, held_elsewhere
from xprocess.manager import XProcessInfo
from xprocess.records import ProcessRecord, RecordStore
from xprocess.runs import running_users
from xprocess.status import (
    COLUMNS,
    FOREIGN,
    MIN_DATA_WIDTH,
    MOVED,
    foreign_note,
    held_by,
    in_full,
    row,
    shown_path,
    status_of,
    table,
    terminal_width,
)
from xprocess.termination import stop_record
from xprocess.values import clear_values, describe_values

# Re-exported: tests and the plugin import these from here, where they always were.
__all__ = [
    "COLUMNS",
    "FOREIGN",
    "MIN_DATA_WIDTH",
    "MOVED",
    "held_by",
    "kill",
    "show",
    "status_of",
    "table",
    "terminal_width",
]

Write = Callable[[str], None]

_STATUS = {1: "TERMINATED", 0: "NO PROCESS FOUND", -1: "FAILED TO TERMINATE"}


def _infos(
    roots: Iterable[Path], names: list[str] | None, *, starting: bool = False
) -> list[XProcessInfo]:
    """The recorded processes (those in ``names``); with ``starting``, also the names a start
    holds the lock of before it has written a first record."""
    infos = []
    for root in roots:
        store = RecordStore(root)
        recorded = store.names()
        if starting:
            recorded = sorted({*recorded, *_first_starts(Layout(root))})
        for name in recorded:
            if names is None or name in names:
                infos.append(XProcessInfo(root, name))
    return infos


def _first_starts(layout: Layout) -> list[str]:
    """Names without a record whose lock another process holds: a first start preparing."""
    try:
        locks = sorted(layout.locks.glob("*.lock"))
    except OSError:
        return []
    return [
        lock.name.removesuffix(".lock")
        for lock in locks
        if not layout.record(lock.name.removesuffix(".lock")).exists() and held_elsewhere(lock)
    ]


def _nothing_recorded(looked_in: Iterable[Path], rootdir: Path | None) -> str:
    places = " or ".join(shown_path(Path(p), rootdir) for p in looked_in) or "(no records root)"
    where = f" (rootdir {rootdir})" if rootdir is not None else ""
    return f"nothing recorded under {places}{where}"


def show(
    roots: Iterable[Path],
    write: Write,
    names: list[str] | None = None,
    *,
    rootdir: Path | None = None,
    looked_in: Iterable[Path] | None = None,
    width: int | None = None,
    full: bool = False,
) -> int:
    """Print the table of recorded processes, then the shared values; returns 0 (1 when one of
    ``names`` has no record).

    Log paths are shown relative to ``rootdir``; when nothing is recorded, the line says where
    it looked (``looked_in``, default ``roots``). ``width`` is the terminal's (see
    ``terminal_width``). ``full`` (always, with ``names``) shows each record whole instead of
    a line of the table.
    """
    roots = list(roots)
    infos = _infos(roots, names, starting=True)
    now = time.time()
    if names is not None:
        status = 0
        for missing in sorted(set(names) - {info.name for info in infos}):
            write(f"{missing}: NO RECORD (nothing of that name was started here)")
            status = 1
        for info in infos:
            for line in in_full(info, now):
                write(line)
        return status
    values = [line for root in roots for line in describe_values(root)]
    if not infos and not values:
        write(_nothing_recorded(roots if looked_in is None else looked_in, rootdir))
        return 0
    if full:
        for info in infos:
            for line in in_full(info, now):
                write(line)
    elif infos:
        for line in table([row(info, now, rootdir) for info in infos], width):
            write(line)
    for line in values:
        write(line)
    return 0


def _forget_if_gone(info: XProcessInfo, stopped: ProcessRecord, *, moved: bool = False) -> None:
    """Remove the record of a process that ``--xkill`` left gone; its log and control dir stay.

    Not while a start of that name is under way (its lock is held, as by a concurrent run), nor
    when the record changed since it was read: then the record is another start's. ``moved``:
    the record is one written before the project was moved here.
    """
    store = info.store
    try:
        with NameLock(store.lock_path(info.name), info.name, 0):
            current = store.moved(info.name) if moved else store.read(info.name)
            same = current is not None and (current.pid, current.create_time, current.token) == (
                stopped.pid,
                stopped.create_time,
                stopped.token,
            )
            if same and current is not None and not current.is_alive():
                store.record_path(info.name).unlink(missing_ok=True)
    except (StartupTimeoutError, OSError):
        pass  # kept: shown DEAD until the next --xkill


def kill(
    roots: Iterable[Path],
    write: Write,
    names: list[str] | None = None,
    *,
    rootdir: Path | None = None,
    looked_in: Iterable[Path] | None = None,
    force: bool = False,
) -> int:
    """Terminate recorded process trees (all, or those in ``names``).

    Without ``names``, shared values are cleared first (their cleanup run where it can be, while
    the processes they may need still run), then the processes are terminated. The record of
    each process that is then gone is removed (see ``_forget_if_gone``). A process that a live
    test run holds or uses is left running, with a line saying so, unless ``force``; and while
    one is, shared values (which may be that run's) are left too.
    Returns 0 when each is gone, 1 when one could not be terminated, was left running or a name
    has no record.
    """
    roots = list(roots)
    infos = _infos(roots, names)
    status = 0
    if names is not None:
        for missing in sorted(set(names) - {info.name for info in infos}):
            write(f"- {missing} NO RECORD (nothing of that name was started here)")
            status = 1
    elif not infos and not any(describe_values(root) for root in roots):
        write(_nothing_recorded(roots if looked_in is None else looked_in, rootdir))
    held = {} if force else {info.name: _in_use(info) for info in infos}
    if names is None:
        if any(held.values()):
            write("- shared values left as they are: a test run in progress may use them")
        else:
            # Values first, as at the end of a run: cleaning one up may need its server.
            for root in roots:
                status = clear_values(root, write) or status
    for info in infos:
        moved = info.store.moved(info.name) if info.record is None else None
        if moved is not None:
            status = _kill_moved(info, moved, write) or status
            continue
        foreign = foreign_note(info)
        if foreign is not None:
            write(f"- {info.name} FOREIGN (nothing signalled: {foreign})")
            continue
        if info.record is None:
            write(f"- {info.name} UNREADABLE RECORD (nothing signalled; see the warning above)")
            status = 1
            continue
        if held.get(info.name):
            write(
                f"{info.pid} {info.name} LEFT RUNNING: held by {held[info.name]}, a test run "
                "in progress; stop that run first, or add --xforce to stop it anyway"
            )
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
        elif label != "NOT SIGNALLED":
            _forget_if_gone(info, info.record)
    return status


def _kill_moved(info: XProcessInfo, moved: ProcessRecord, write: Write) -> int:
    """``--xkill`` of what ``info``'s name left running at the project's old place: 1 when it
    could not be stopped."""
    notes: list[str] = []
    result = stop_record(moved, report=notes.append)
    label = "NOT SIGNALLED" if notes and result <= 0 else _STATUS[result]
    pid = moved.pid if moved.pid > 0 else "-"
    write(f"{pid} {info.name} {label} (started at {moved.root}, before the project moved here)")
    for note in notes:
        write(f"    {note}")
    if result >= 0 and label != "NOT SIGNALLED":
        _forget_if_gone(info, moved, moved=True)
    return 1 if result < 0 else 0


def _in_use(info: XProcessInfo) -> str:
    """Who among live test runs holds or uses the running process of ``info`` ("" if none)."""
    record = info.record
    if record is None or not info.isrunning():
        return ""
    # A test run in progress has its marker; a script's XProcess (no run) holds nothing here.
    layout = Layout(info.store.root)
    in_runs = [
        entry
        for entry in running_users([*record.holders, *record.users])
        if layout.run_marker(str(entry.get("run", ""))).exists()
    ]
    return held_by(record) if in_runs else ""
