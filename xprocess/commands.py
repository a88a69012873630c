"""``--xshow`` and ``--xkill``: list and stop every recorded process, outside any test run.

``--xshow`` prints a table, one line per recorded process::

    NAME         PID    STATUS  UPTIME   HELD BY       DATA        LOG
    http_server  7168   LIVE    0:00:41  -             port=40123  .pytest_cache/d/.xprocess/...

STATUS is LIVE (ready and running), STARTING (running but never ready: a start in progress, or
one whose starter crashed; or not running yet while a start holds its lock, preparing in the
starter's ``args()``, as ``initdb`` does), FAILED (its last start failed) or DEAD (not running, or
its pid now belongs to another process).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from xprocess.layout import Layout
from xprocess.locking import held_elsewhere
from xprocess.manager import XProcessInfo
from xprocess.records import FAILED, READY, ProcessRecord, RecordStore
from xprocess.runs import running_users
from xprocess.termination import stop_record
from xprocess.values import clear_values, describe_values

__all__ = ["COLUMNS", "held_by", "kill", "show", "status_of"]

Write = Callable[[str], None]

_STATUS = {1: "TERMINATED", 0: "NO PROCESS FOUND", -1: "FAILED TO TERMINATE"}

LIVE = "LIVE"
DEAD = "DEAD"
STARTING = "STARTING"
FAILED_STATUS = "FAILED"
COLUMNS = ("NAME", "PID", "STATUS", "UPTIME", "HELD BY", "DATA", "LOG")
_DATA_WIDTH = 40


def _uptime(record: ProcessRecord, now: float) -> str:
    seconds = max(0, int(now - record.create_time))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}"


def status_of(info: XProcessInfo, *, locked: bool = False) -> str:
    """LIVE, STARTING, FAILED or DEAD (see the module's docstring).

    ``locked``: another process holds the name's lock, so a record of no running process is
    a start still preparing (its ``args()`` runs before there is a process to record).
    """
    record = info.record
    running = record is not None and info.isrunning()
    if not running and locked:
        return STARTING
    if record is None:
        return DEAD
    if record.state == FAILED:
        return FAILED_STATUS
    if not running:
        return DEAD
    return LIVE if record.state == READY else STARTING


def held_by(record: ProcessRecord) -> str:
    """Who holds the process: the xdist workers using it until their teardown releases it, and
    the runs still going whose end stops it (``-``: nobody)."""
    workers = [str(h.get("worker", "?")) for h in running_users(record.holders)]
    runs = [f"run {str(user.get('run', '?'))[:8]}" for user in running_users(record.users)]
    return ", ".join(workers + runs) or "-"


def _data(record: ProcessRecord) -> str:
    text = ", ".join(
        f"{key}={value if isinstance(value, str) else json.dumps(value)}"
        for key, value in sorted(record.data.items())
    )
    if len(text) > _DATA_WIDTH:
        text = text[: _DATA_WIDTH - 1] + "…"
    return text or "-"


def _shown_path(path: Path, rootdir: Path | None) -> str:
    if rootdir is not None:
        try:
            return str(Path(path).relative_to(rootdir))
        except ValueError:
            pass
    return str(path)


def row(info: XProcessInfo, now: float, rootdir: Path | None = None) -> tuple[str, ...]:
    """The cells of ``info``'s line in the table (see COLUMNS)."""
    record = info.record
    log = _shown_path(info.logpath, rootdir)
    locked = held_elsewhere(info.store.lock_path(info.name))
    if record is None:
        if locked:
            return (info.name, "-", STARTING, "-", "-", "(preparing its first start)", log)
        return (info.name, "-", DEAD, "-", "-", "(record missing or unreadable)", log)
    status = status_of(info, locked=locked)
    running = status in (LIVE, STARTING)
    return (
        info.name,
        str(info.pid) if info.pid is not None else "-",
        status,
        _uptime(record, now) if running else "-",
        held_by(record) if running else "-",
        _data(record),
        log,
    )


def table(rows: list[tuple[str, ...]]) -> list[str]:
    """``rows`` under the header, each column as wide as its widest cell."""
    lines = [COLUMNS, *rows]
    widths = [max(len(cells[i]) for cells in lines) for i in range(len(COLUMNS))]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True)).rstrip()
        for cells in lines
    ]


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
    places = " or ".join(_shown_path(Path(p), rootdir) for p in looked_in) or "(no records root)"
    where = f" (rootdir {rootdir})" if rootdir is not None else ""
    return f"nothing recorded under {places}{where}"


def show(
    roots: Iterable[Path],
    write: Write,
    *,
    rootdir: Path | None = None,
    looked_in: Iterable[Path] | None = None,
) -> int:
    """Print the table of recorded processes, then the shared values; always returns 0.

    Log paths are shown relative to ``rootdir``; when nothing is recorded, the line says where
    it looked (``looked_in``, default ``roots``).
    """
    roots = list(roots)
    infos = _infos(roots, None, starting=True)
    values = [line for root in roots for line in describe_values(root)]
    if not infos and not values:
        write(_nothing_recorded(roots if looked_in is None else looked_in, rootdir))
        return 0
    now = time.time()
    if infos:
        for line in table([row(info, now, rootdir) for info in infos]):
            write(line)
    for line in values:
        write(line)
    return 0


def kill(
    roots: Iterable[Path],
    write: Write,
    names: list[str] | None = None,
    *,
    rootdir: Path | None = None,
    looked_in: Iterable[Path] | None = None,
) -> int:
    """Terminate recorded process trees (all, or those in ``names``).

    Without ``names``, shared values are cleared first (their cleanup run where it can be, while
    the processes they may need still run), then the processes are terminated.
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
        write(_nothing_recorded(roots if looked_in is None else looked_in, rootdir))
    if names is None:
        # Values first, as at the end of a run: cleaning one up may need its server.
        for root in roots:
            status = clear_values(root, write) or status
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
    return status
